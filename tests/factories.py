from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from apps.jobs.models import Job


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"client{n}")


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    owner = factory.SubFactory(UserFactory)
    kind = "diagnostics.noop"
    payload = factory.LazyFunction(dict)
    queue = "default"
    max_attempts = 3

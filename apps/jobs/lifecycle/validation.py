"""Checking a submission before anything is written: its kind, its payload (the kind's schema,
and what PostgreSQL's jsonb can store), its priority, its attempts and its outbound URLs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from apps.core.errors import ApplicationError, InvalidInput
from apps.core.text import clean_text
from apps.core.urlsafety import UnsafeURL, check_outbound_url
from apps.jobs.registry import PRIORITIES, Kind, UnknownKind, registry


def kind_or_error(name: str) -> Kind:
    try:
        return registry.get(name)
    except UnknownKind:
        raise unknown_kind_error(name) from None


def unknown_kind_error(name: str) -> InvalidInput:
    known = [k.name for k in registry.public()]
    return InvalidInput(
        f"Unknown kind {name!r}. Known kinds: {', '.join(known)}.",
        code="unknown_kind",
        details={"known_kinds": known},
    )


def job_refuse_internal_kind(kind: str) -> None:
    """A client's submission of an internal kind (the platform's own, such as webhook
    delivery) is answered exactly as one of an unknown kind: 400 unknown_kind, listing the
    kinds a client may submit. Checked before the payload, whose errors would name it."""
    if kind in registry and registry.get(kind).internal:
        raise unknown_kind_error(kind)


def job_validate_outbound_urls(*, k: Kind, payload: dict[str, Any]) -> None:
    """Every URL a client gives is checked when it is given: the payload's URLs that the
    kind's handler will call (Kind.outbound_urls) pass the check a callback_url passes."""
    for key in k.outbound_urls:
        url = payload.get(key)
        if not isinstance(url, str):
            continue  # absent or not a string: the kind's schema decides
        try:
            check_outbound_url(url)
        except UnsafeURL as exc:
            raise InvalidInput(
                f"payload {key} is refused: {exc}.",
                code="unsafe_url",
                details=[{"path": key, "message": str(exc)}],
            ) from None


def _unstorable(text: str) -> str | None:
    """Why PostgreSQL's jsonb cannot store `text`, or None when it can: a NUL character, or a
    lone surrogate (JSON's "\\ud800" parses to one; it has no UTF-8 form, and jsonb refuses
    it with "invalid input syntax for type json", a 500 if nothing catches it first). A
    parsed surrogate pair is already one character, so any surrogate left is a lone one."""
    if "\x00" in text:
        return "must not contain NUL (\\u0000) characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain lone surrogates (\\ud800-\\udfff not in a pair)"
    return None


def _find_unstorable(value: Any, path: str = "(root)") -> tuple[str, str] | None:
    """The path of the first string (key or value) jsonb cannot store, and why, if any."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            reason = _unstorable(item)
            if reason is not None:
                return where, reason
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = key if where == "(root)" else f"{where}/{key}"
                reason = _unstorable(key)
                if reason is not None:
                    return child_path, reason
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}/{i}") for i, child in enumerate(item))
    return None


class PriorityNotAllowed(ApplicationError):
    status_code = 403
    code = "priority_not_allowed"


def _may_ask_for_high(owner: AbstractBaseUser) -> bool:
    """HIGH_PRIORITY_CLIENTS: staff, the usernames listed, or everyone with `*`. Read from the
    loaded user, so it costs the submit path no query."""
    allowed = settings.HIGH_PRIORITY_CLIENTS
    return getattr(owner, "is_staff", False) or "*" in allowed or owner.get_username() in allowed


def job_check_priority_allowed(*, owner: AbstractBaseUser, k: Kind, priority: str) -> None:
    """A client's `high` jumps every other client's work: who may ask for it is a setting
    (403 priority_not_allowed). Spelling out a kind's own default asks for nothing more."""
    if priority == "high" and k.priority != "high" and not _may_ask_for_high(owner):
        raise PriorityNotAllowed(
            "You may not submit at high priority (HIGH_PRIORITY_CLIENTS); use default or low.",
            details={"priority": priority, "allowed": ["default", "low"]},
        )


def job_validate(
    *,
    kind: str,
    payload: Any,
    priority: str | None = None,
    max_attempts: int | None = None,
    owner: AbstractBaseUser | None = None,
) -> tuple[Kind, str, int]:
    """Check a submission against its kind; returns (kind, priority, max_attempts). With the
    owner, also what only the owner can answer: the kind's own payload check (references to
    the owner's rows, such as an upload)."""
    k = kind_or_error(kind)
    if not isinstance(payload, dict):
        raise InvalidInput(
            "The payload must be a JSON object.",
            code="invalid_payload",
            details=[{"path": "(root)", "message": "must be an object"}],
        )
    unstorable = _find_unstorable(payload)
    if unstorable is not None:
        # PostgreSQL's jsonb cannot store U+0000 or a lone surrogate; refuse either here, as
        # bad input, rather than fail at INSERT. The path is cleaned: the error is JSON too.
        where, reason = clean_text(unstorable[0]), unstorable[1]
        raise InvalidInput(
            f"The payload has a string that cannot be stored at {where}: it {reason}.",
            code="invalid_payload",
            details=[{"path": where, "message": reason}],
        )
    errors = k.payload_errors(payload)
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"The payload does not fit kind {kind!r}: {first['path']}: {first['message']}",
            code="invalid_payload",
            details=errors,
        )
    if k.check_payload is not None and owner is not None:
        # After the schema, so the hook sees a well-formed payload; most kinds have none.
        k.check_payload(owner, payload)
    priority = priority or k.priority
    if priority not in PRIORITIES:
        raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}.", code="invalid_priority")
    if max_attempts is None:
        max_attempts = k.max_attempts
    elif not 1 <= max_attempts <= k.max_attempts:
        raise InvalidInput(
            f"max_attempts for {kind!r} must be between 1 and {k.max_attempts}.", code="invalid_max_attempts"
        )
    return k, priority, max_attempts


def job_validate_callback_url(url: str | None) -> str:
    """A callback URL must be one the platform may call (http(s), not an internal address)."""
    if not url:
        return ""
    try:
        check_outbound_url(url)
    except UnsafeURL as exc:
        raise InvalidInput(f"callback_url is refused: {exc}.", code="unsafe_callback_url") from None
    return url


@dataclass(frozen=True)
class CheckedJob:
    """A submission that passed every check, ready for jobs_create."""

    k: Kind
    payload: dict[str, Any]
    priority: str
    max_attempts: int
    run_at: datetime | None = None
    callback_url: str = ""

    @property
    def queue(self) -> str:
        return self.k.queue_for(self.priority)


def job_check(
    *,
    owner: AbstractBaseUser | None,
    kind: str,
    payload: Any,
    priority: str | None = None,
    max_attempts: int | None = None,
    run_at: datetime | None = None,
    callback_url: str | None = "",
    from_client: bool = False,
) -> CheckedJob:
    """Every check of one submission, in order. `from_client` (the API sets it) refuses
    internal kinds, checks the payload's outbound URLs and who may ask for high priority."""
    if from_client:
        job_refuse_internal_kind(kind)
    k, priority, max_attempts = job_validate(
        kind=kind, payload=payload, priority=priority, max_attempts=max_attempts, owner=owner
    )
    if from_client:
        assert owner is not None
        job_validate_outbound_urls(k=k, payload=payload)
        job_check_priority_allowed(owner=owner, k=k, priority=priority)
    return CheckedJob(
        k=k,
        payload=payload,
        priority=priority,
        max_attempts=max_attempts,
        run_at=run_at,
        callback_url=job_validate_callback_url(callback_url),
    )

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.deadletters import selectors, services
from apps.deadletters.models import DeadLetter


class Command(BaseCommand):
    help = "List, redrive or discard dead letters (parked failed jobs)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        ls = sub.add_parser("list", help="show open dead letters, newest first")
        ls.add_argument("--kind")
        ls.add_argument("--limit", type=int, default=50)
        for name in ("redrive", "discard"):
            act = sub.add_parser(name, help=f"{name} letters by id, or every open one matching --all")
            act.add_argument("ids", nargs="*", type=int)
            act.add_argument("--all", action="store_true", help="every open letter (narrow with --kind)")
            act.add_argument("--kind")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            letters = selectors.dead_letter_list(filters=selectors.DeadLetterFilters(kind=options["kind"]))
            for letter in letters[: options["limit"]]:
                self.stdout.write(
                    f"{letter.pk}\t{letter.created_at:%Y-%m-%d %H:%M:%S}\t{letter.kind}\t"
                    f"{letter.job_id}\t{letter.error_type}: {letter.error_message[:80]}"
                )
            return
        ids: list[int] = options["ids"]
        if options["all"]:
            qs = DeadLetter.objects.filter(state=DeadLetter.State.OPEN)
            if options["kind"]:
                qs = qs.filter(kind=options["kind"])
            ids = list(qs.order_by("created_at").values_list("pk", flat=True))
        elif not ids:
            raise CommandError("give dead letter ids, or --all")
        missing = set(ids) - set(DeadLetter.objects.filter(pk__in=ids).values_list("pk", flat=True))
        if missing:
            raise CommandError(f"no dead letter with id {', '.join(map(str, sorted(missing)))}")
        act = services.dead_letters_redrive_many if action == "redrive" else services.dead_letters_discard_many
        changed = act(letter_ids=ids, actor="manage.py")
        verb = "redriven" if action == "redrive" else "discarded"
        self.stdout.write(f"{changed} {verb}, {len(ids) - changed} already resolved")

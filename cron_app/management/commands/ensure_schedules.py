"""Create or update the declared django-q2 schedules (idempotent; also run after migrate)."""

from django.core.management.base import BaseCommand

from cron_app.scheduler import schedules_ensure


class Command(BaseCommand):
    help = "Declare the heartbeat, cron and maintenance django-q2 schedules."

    def handle(self, *args, **options):
        for row in schedules_ensure():
            self.stdout.write(f"{row.name}: {row.func} every {row.minutes} min (next {row.next_run:%Y-%m-%d %H:%M:%S})")

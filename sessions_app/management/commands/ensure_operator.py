"""Create the first operator account if there is none, and print its one-time login."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an operator (superuser) account if none exists and print its password once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("OPENCLAW_OPERATOR_USERNAME", "admin"))

    def handle(self, *args, username: str, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Operator account exists; log in at /admin/ (manage.py changepassword to reset).")
            return
        password = os.environ.get("OPENCLAW_OPERATOR_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"Operator account created: {username} / {password}"))
        self.stdout.write("Keep it: this password is shown only once.")

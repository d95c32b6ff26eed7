from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def webchat(request):
    return render(request, "webchat.html", {})

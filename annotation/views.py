from django.shortcuts import render

from stickerloop.roles import Role, role_required


@role_required(Role.RATER)
def rater_home(request):
    return render(request, "annotation/rater_home.html", {})

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone

from stickerloop.home import selectors
from stickerloop.roles import Role, user_roles


@login_required
def home(request):
    """What needs my attention, per role I hold. A rater's home is their queue."""
    roles = user_roles(request.user)
    curator = bool(roles & {Role.CURATOR, Role.ADMIN})
    engineer = bool(roles & {Role.ML_ENGINEER, Role.ADMIN})
    if not (curator or engineer):
        if Role.RATER in roles:
            return redirect("rater-home")
        return render(request, "home.html")
    now = timezone.now()
    return render(
        request,
        "home_staff.html",
        {
            "curator": selectors.curator_attention(now=now) if curator else None,
            "engineer": selectors.engineer_attention(now=now) if engineer else None,
            "recent_days": selectors.RECENT.days,
        },
    )

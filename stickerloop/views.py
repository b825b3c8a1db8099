from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from stickerloop.roles import Role, user_roles


@login_required
def home(request):
    """Send each role to where its work is."""
    roles = user_roles(request.user)
    if roles & {Role.CURATOR, Role.ML_ENGINEER, Role.ADMIN}:
        return redirect("batch-list")
    if Role.RATER in roles:
        return redirect("rater-home")
    return render(request, "home.html")


class MeApi(APIView):
    """Who the caller is and which roles they hold (any authenticated user)."""

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        roles = serializers.ListField(child=serializers.CharField())

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        return Response(
            {"username": request.user.get_username(), "roles": sorted(user_roles(request.user))}
        )

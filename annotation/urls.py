from django.urls import path

from annotation import views

urlpatterns = [
    path("rate/", views.rater_home, name="rater-home"),
]

from django.db import migrations


def admin_role_is_staff(apps, schema_editor):
    """Users given the admin group before the admin role reached the Django admin site, or by
    hand there, are staff, as ``user_create_with_roles`` makes every admin now: the admin site
    lets in only staff."""
    User = apps.get_model("auth", "User")
    User.objects.filter(groups__name="admin", is_staff=False).update(is_staff=True)


class Migration(migrations.Migration):
    dependencies = [("stickerloop", "0001_roles")]

    operations = [migrations.RunPython(admin_role_is_staff, migrations.RunPython.noop)]

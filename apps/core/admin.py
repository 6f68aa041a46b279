"""The admin site's names, set in this one place. The header's links (Flower among them) are
in templates/admin/base_site.html; apps.core is listed before django.contrib.admin in
INSTALLED_APPS so that template overrides the admin's own."""

from django.contrib import admin

admin.site.site_header = "Job platform admin"
admin.site.site_title = "Job platform admin"
admin.site.index_title = "Jobs, dead letters and operations"
# The lists need the width: the sidebar repeats the index's links and would take 300 of a
# 1,366 px laptop's pixels from every list.
admin.site.enable_nav_sidebar = False

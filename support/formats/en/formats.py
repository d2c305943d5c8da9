"""Dates and times as the workbench writes them ("2026-12-04 17:30", 24-hour, the site's
time zone), for every page that renders a date without a format of its own: the admin's
lists and forms, tooltips. Django's English defaults ("Dec. 4, 2026, 5:30 p.m.") read
differently from the workbench beside them."""

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
FIRST_DAY_OF_WEEK = 1  # Monday

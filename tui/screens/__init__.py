"""The dashboard's screens: one per task of the person on site, plus the dialogs."""

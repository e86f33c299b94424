"""The dashboard's own widgets: the header bar, the slot table, the charts."""

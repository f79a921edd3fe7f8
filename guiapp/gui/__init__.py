"""The Qt wizard: a thin layer over guiapp.core (see the wizard issue)."""

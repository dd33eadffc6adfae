"""The application layer between the tabs and the engine: who may touch which files (``access``) and how remote
users bring data in (``uploads``)."""

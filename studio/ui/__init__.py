"""Everything that imports gradio lives here: the app (``app.py``), one module per tab, and ``launch.py``."""

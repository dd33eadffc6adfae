"""The application layer between the tabs and the engine: the parts of the studio the tabs call (``datasets``,
``captions``, ``evaluation``, ``runs``), the background jobs, the errors the user sees, who may touch which files
(``access``, ``confine``) and how remote users bring data in (``uploads``). No gradio here."""

"""The web dashboard: server-rendered pages over the service layer (``ringfence.web.routes``)."""

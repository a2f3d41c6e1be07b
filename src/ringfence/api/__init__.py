"""ringfence as a service: the REST API (FastAPI), the agent gate, and the dashboard's routes."""

"""The thin backend: an aiohttp JSON API (`api`, described in `openapi.yaml`) over SQLAlchemy
(`models`), with the rules in one module each: call logs (`calls`), login (`login`), cargo and
bundles (`bundling`), administration (`admin`). `app.create_app` / `app.start_backend` run it."""

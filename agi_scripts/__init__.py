"""Classic AGI entries (one process per call, stdin/stdout), for sites without FastAGI."""

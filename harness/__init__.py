"""What the tests, the benchmarks and scripts/ run the project against, none of it part of the
service: a throwaway PostgreSQL server (postgres.py), a headless chromium (browser.py) and the
console's seeding (console.py: calls straight into the database, a real WAV recording)."""

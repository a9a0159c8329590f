"""The apps (demo, benchmark, experts): the only places that join an env, a world model and a planner."""

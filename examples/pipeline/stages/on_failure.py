"""
Stage `on-failure`: the workflow's `run_on_failure` stage.

Bodywork runs it only when the workflow fails, with the reason in the
environment variable EXCEPTION_MESSAGE; here it just reports it (a real
project might page someone or clean up).
"""
import os

if __name__ == "__main__":
    message = os.environ.get("EXCEPTION_MESSAGE", "(no EXCEPTION_MESSAGE in the environment)")
    print(f"on-failure: the workflow failed: {message}")

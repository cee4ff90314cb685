"""Launch AI Trader: `python main.py` (demo mode without API keys)."""

from app.main import main

if __name__ == "__main__":
    raise SystemExit(main())

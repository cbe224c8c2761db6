# Host-only code: never copied to a board (tools/build.py lists the board files).

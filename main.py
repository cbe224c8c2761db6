# Runs at power-up after boot.py: bring the alarm up, then serve forever. start.py is boot-only
# code: it frees itself before serving, once this file drops its own reference to it too.
from firmware import start

serve = start.main()
del start
serve()

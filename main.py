# Runs at power-up after boot.py: start the alarm.
from firmware import app

app.main()

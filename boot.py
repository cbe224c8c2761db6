# Runs first at power-up. Kept tiny: all the work is in the firmware package.
import gc

gc.collect()

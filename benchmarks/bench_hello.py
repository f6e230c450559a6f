"""
The demo worker under another module name, so that one daemon can run it
both cold (``turberfield_twisted.demo.hello``) and warm (this module, whose
section says ``warm = true``).
"""

from turberfield_twisted.demo.hello import Hello
from turberfield_twisted.worker import run_worker

if __name__ == "__main__":
    run_worker(Hello)

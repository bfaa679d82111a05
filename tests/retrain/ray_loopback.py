"""`python ray_loopback.py start ...`: Ray's own `ray start`, with every node kept on 127.0.0.1.

Ray rewrites a node address of 127.0.0.1 to the machine's outward address (and its GCS and raylets
then listen on all interfaces) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which in turn refuses to
start a second node. With that variable at 0 (set by the caller, inherited by every Ray process)
and these two switches, a two-node cluster on one machine binds and talks on 127.0.0.1 only.
"""

import sys

import ray._private.ray_constants as constants
import ray._private.services as services
from ray.scripts.scripts import main

constants.ENABLE_RAY_CLUSTER = True  # allow the second node
services.resolve_ip_for_localhost = lambda host: host  # keep --node-ip-address=127.0.0.1 as given

if __name__ == "__main__":
    sys.exit(main())

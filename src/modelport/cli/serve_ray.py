"""`modelport serve --ray ADDR`: the serve flags that deploy on a Ray cluster (Ray Serve)."""

from __future__ import annotations

import argparse
import logging

from modelport.errors import UsageError

log = logging.getLogger("modelport")


def add_ray_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale-out on a Ray cluster (Ray Serve)")
    g.add_argument("--ray", default=None, metavar="ADDR",
                   help="deploy on the Ray cluster at HEAD:PORT as Ray Serve replicas instead "
                        "of serving here; the endpoint (--host/--port on the head node) and "
                        "protocol are the same. Every node needs the bundles at the same path")
    g.add_argument("--replicas", type=int, default=1, metavar="N",
                   help="--ray: replicas of the server (default 1; the initial count with "
                        "--autoscale)")
    g.add_argument("--autoscale", default=None, metavar="MIN:MAX",
                   help="--ray: let Ray Serve scale between MIN and MAX replicas, aiming at "
                        "--target-ongoing-requests per replica")
    g.add_argument("--target-ongoing-requests", type=float, default=2.0, metavar="N",
                   help="--ray --autoscale: requests in flight per replica Ray Serve aims at "
                        "(default 2)")
    g.add_argument("--max-ongoing-requests", type=int, default=32, metavar="N",
                   help="--ray: requests one replica takes at once (default 32; at least "
                        "--max-batch for batches to fill). Ray's proxy prefers the replicas on "
                        "its own node and sends others a request only when those hold this many")
    g.add_argument("--replica-cpus", type=float, default=1.0, metavar="N",
                   help="--ray: Ray CPUs each replica reserves (default 1)")
    g.add_argument("--max-replicas-per-node", type=int, default=None, metavar="N",
                   help="--ray: at most N replicas on one node (1 spreads them over the nodes)")
    g.add_argument("--proxy-location", default="HeadOnly", choices=("HeadOnly", "EveryNode"),
                   help="--ray: where Ray Serve's HTTP proxy listens (default HeadOnly: the "
                        "head node's --host:--port)")


def run_on_ray(args: argparse.Namespace, options) -> int:
    """`serve --ray`: deploy ``options``' server as Ray Serve replicas and wait for SIGTERM."""
    from modelport.serve.ray_deploy import RayServeOptions, parse_autoscale, serve_on_ray

    if options.port == 0:
        raise UsageError("--ray needs a fixed --port: Ray Serve's proxy does not pick a free one")
    ray_options = RayServeOptions(
        address=args.ray, replicas=args.replicas, autoscale=parse_autoscale(args.autoscale),
        target_ongoing_requests=args.target_ongoing_requests,
        max_ongoing_requests=args.max_ongoing_requests, replica_cpus=args.replica_cpus,
        max_replicas_per_node=args.max_replicas_per_node, proxy_location=args.proxy_location)

    def ready(url: str) -> None:
        how = (f"autoscaling {args.autoscale}" if args.autoscale
               else f"{args.replicas} replica(s)")
        print(f"serving on Ray ({args.ray}, {how}) at {url}", flush=True)

    return serve_on_ray(args.bundles, args.name, options, ray_options, on_ready=ready)

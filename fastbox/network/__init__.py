"""Container networking: the default bridge fastbox0, user-defined networks, addresses,
published ports and names.

Decisions and state live here; the kernel work (veth pairs, addresses, routes, nf_tables
elements) is done by the C core through fastbox.runtime.network, the only caller of
fastbox._core. Long-lived parts (a network's bridge and fastbox's nft table, made once)
run `ip` and `nft`, off the start path.

- options: the flags of run/create (--network, -p, -P, --dns, --add-host, --network-alias)
- store: network definitions (FASTBOX_ROOT/networks), the default bridge from the config
- ipam: address leases on disk under a lock, reclaimed from dead owners
- endpoints: what a container's network holds, written before anything is applied, so a
  sweep can undo it without the container's network namespace
- ports: host ports checked by binding, random ones
- nft: fastbox's own table (maps keyed by port), and the elements of one container
- host: the bridge, sysctls and the table of a network, made once
- files: /etc/hosts, /etc/resolv.conf, /etc/hostname for each container
"""

"""`fastbox network ...` and `fastbox port`: user-defined networks and published ports."""
from typing import List, Optional

import typer


def register(app):
    net = typer.Typer(help="Manage networks.", no_args_is_help=True)
    net.command("create")(create)
    net.command("ls")(ls)
    net.command("inspect")(inspect)
    net.command("rm")(rm)
    net.command("prune")(prune)
    net.command("connect")(connect)
    net.command("disconnect")(disconnect)
    app.add_typer(net, name="network")
    app.command("port")(port)


def create(name: str,
           subnet: List[str] = typer.Option([], "--subnet",
                                            help="CIDR, e.g. 10.70.0.0/24; once more for IPv6, e.g. fd00:70::/64"),
           gateway: List[str] = typer.Option([], "--gateway", help="The bridge's address (one per family)"),
           ipv6: bool = typer.Option(False, "--ipv6", help="IPv6 too: containers get an IPv6 address"),
           internal: bool = typer.Option(False, "--internal", help="No traffic in or out of the network"),
           driver: str = typer.Option("bridge", "--driver", "-d", help="Only bridge"),
           label: List[str] = typer.Option([], "--label", help="Set metadata: KEY=VALUE"),
           opt: List[str] = typer.Option([], "--opt", "-o",
                                         help="Driver option: com.docker.network.driver.mtu=N")):
    """Create a network; containers on it find each other by name."""
    from fastbox.errors import SpecError
    from fastbox.network import host, store
    from fastbox.run_options import labels
    if driver != "bridge":
        raise SpecError(f"invalid --driver {driver!r}: only bridge")
    opts = []
    for o in opt:
        key, sep, value = o.partition("=")
        if not sep:
            raise SpecError(f"invalid --opt {o!r}: expected KEY=VALUE")
        opts.append((key, value))
    net = store.create(name, subnet, gateway, internal, labels(label), opts, ipv6=ipv6)
    try:
        host.ensure(net)
    except BaseException:
        store.delete(net)
        raise
    print(net.id)


def ls(quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show ids"),
       format: Optional[str] = typer.Option(None, "--format",
                                            help="table, json, or a Go template: '{{.Name}}'"),
       filter: List[str] = typer.Option([], "--filter", "-f",
                                        help="name=, id=, driver=, label=KEY[=VALUE], type=custom|builtin, dangling=true|false")):
    """List networks."""
    from fastbox.cli import filters, go_template
    from fastbox.network import endpoints, store
    endpoints.sweep()
    wanted = _network_filters(filter)
    nets = [n for n in store.list_all() if filters.matches(n, wanted, _NETWORK_MATCHERS)]
    if quiet:
        for n in nets:
            print(n.id[:12])
        return
    for line in go_template.format_rows(
            format, [_row(n) for n in nets], titles=NETWORK_TITLES,
            default="{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Subnet}}\t{{.Internal}}"):
        print(line)


NETWORK_TITLES = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                  "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
                  "CreatedAt": "CREATED AT", "Subnet": "SUBNET"}


def _network_filters(items):
    """Docker's `network ls --filter`, checked as Docker checks it."""
    from fastbox.cli import filters
    from fastbox.errors import SpecError
    out = filters.split(items, _NETWORK_MATCHERS)
    for key, allowed in (("type", ("custom", "builtin")), ("dangling", ("true", "false", "1", "0"))):
        for value in out.get(key, ()):
            if value not in allowed:
                raise SpecError(f"invalid filter '{key}={value}'")
    return out


def _builtin(n):
    from fastbox.network import store
    return n.name == store.DEFAULT_NAME


def _dangling(n):
    from fastbox.network import endpoints
    return not _builtin(n) and not endpoints.on_network(n)


def _label_matches(n, wanted):
    from fastbox.cli import filters
    return filters.labels_match(n.labels, wanted)


_NETWORK_MATCHERS = {
    "name": lambda n, v: v in n.name,
    "id": lambda n, v: n.id.startswith(v),
    "driver": lambda n, v: v == "bridge",
    "label": _label_matches,
    "type": lambda n, v: _builtin(n) == (v == "builtin"),
    "dangling": lambda n, v: _dangling(n) == (v in ("true", "1")),
}


def _row(n):
    """A network as `network ls --format` sees it: Docker's fields, and its subnet."""
    return {"ID": n.id[:12], "Name": n.name, "Driver": "bridge", "Scope": "local",
            "IPv6": str(bool(n.subnet6)).lower(), "Internal": str(n.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())),
            "CreatedAt": n.created or "",
            "Subnet": f"{n.subnet}/{n.prefix}"}


def inspect(names: List[str] = typer.Argument(..., metavar="NETWORK..."),
            format: Optional[str] = typer.Option(None, "--format", "-f",
                                                 help="A Go template: '{{range .IPAM.Config}}{{.Subnet}}{{end}}'")):
    """Show networks as JSON, with their containers."""
    from fastbox.cli import go_template
    from fastbox.network import endpoints, store
    endpoints.sweep()
    out = []
    for name in names:
        n = store.get(name)
        d = n.as_dict()
        # Docker's shape as well, which scripts read (.IPAM.Config, .Scope, .EnableIPv6)
        config = [{"Subnet": d["Subnet"], "Gateway": d["Gateway"]}]
        if n.subnet6:
            config.append({"Subnet": d["Subnet6"], "Gateway": d["Gateway6"]})
        d.update(Scope="local", EnableIPv6=bool(n.subnet6), Attachable=False, Ingress=False,
                 IPAM={"Driver": "default", "Options": None, "Config": config})
        d["Containers"] = {ep.container: _member(ep) for ep in endpoints.on_network(n)}
        out.append(d)
    print(go_template.inspect_text(format, out))


def _member(ep):
    """A member as Docker's network inspect shows it (Name, EndpointID, MacAddress,
    IPv4Address, IPv6Address), with fastbox's Names (name, aliases, short id) and host
    veth."""
    from fastbox import containers
    from fastbox.errors import FastboxError
    try:
        name = containers.get(ep.container).name or ""
    except FastboxError:  # a --rm run keeps no record
        name = ""
    return {"Name": name, "EndpointID": ep.id, "MacAddress": ep.mac_address,
            "IPv4Address": f"{ep.ip}/{ep.prefix}",
            "IPv6Address": f"{ep.ip6}/{ep.prefix6}" if ep.ip6 else "", "Names": ep.names,
            "HostInterface": ep.host_if}


def rm(names: List[str] = typer.Argument(..., metavar="NETWORK...")):
    """Remove networks that no container uses (their bridges and rules go too)."""
    from fastbox.errors import ContainerStateError, SpecError
    from fastbox.network import endpoints, host, store
    endpoints.sweep()
    for name in names:
        n = store.get(name)
        if n.name == store.DEFAULT_NAME:
            raise SpecError("bridge is a pre-defined network and cannot be removed")
        users = endpoints.on_network(n)
        if users:
            raise ContainerStateError(f"error while removing network: network {n.name} id {n.id} "
                                      f"has active endpoints ({', '.join(e.container[:12] for e in users)})")
        host.remove(n)
        store.delete(n)
        print(name)


def prune(force: bool = typer.Option(False, "--force", "-f", help="Do not ask"),
          filter: List[str] = typer.Option([], "--filter", help="label=KEY[=VALUE], label!=KEY[=VALUE]")):
    """Remove every user-defined network that no container uses."""
    from fastbox.errors import SpecError
    from fastbox.network import endpoints, host, store
    endpoints.sweep()
    keep, take = [], []
    for item in filter:
        key, sep, value = item.partition("=")
        if key not in ("label", "label!") or not sep:
            raise SpecError(f"invalid filter '{item}': prune takes label= and label!=")
        (keep if key == "label!" else take).append(value)
    for n in store.list_all():
        if take and not any(_label_matches(n, v) for v in take):
            continue
        if any(_label_matches(n, v) for v in keep):
            continue
        if n.name != store.DEFAULT_NAME and not endpoints.on_network(n):
            host.remove(n)
            store.delete(n)
            print(n.name)


def connect(network: str = typer.Argument(..., metavar="NETWORK"),
            container: str = typer.Argument(..., metavar="CONTAINER"),
            alias: List[str] = typer.Option([], "--alias", help="A name for the container on this network"),
            ip: Optional[str] = typer.Option(None, "--ip", help="Its IPv4 address on this network"),
            ip6: Optional[str] = typer.Option(None, "--ip6", help="Its IPv6 address on this --ipv6 network")):
    """Connect a container to a network (a running one at once, else at its start)."""
    from fastbox.network import connect as connecting
    connecting.connect(network, container, alias, ip, ip6)


def disconnect(network: str = typer.Argument(..., metavar="NETWORK"),
               container: str = typer.Argument(..., metavar="CONTAINER"),
               force: bool = typer.Option(False, "--force", "-f", help="No error if it is not connected")):
    """Disconnect a container from a network it was connected to."""
    from fastbox.network import connect as connecting
    connecting.disconnect(network, container, force)


def port(container: str, private: Optional[str] = typer.Argument(None, metavar="[PRIVATE_PORT[/PROTO]]")):
    """List a container's published ports (or the one mapped to PRIVATE_PORT)."""
    from fastbox import containers
    from fastbox.errors import SpecError
    from fastbox.network import endpoints
    from fastbox.network.ports import host_address
    c = containers.get(container)
    ep = endpoints.load(c.id)
    mapped = endpoints.shown_ports(ep) if ep else []
    if private:
        p, _, proto = private.partition("/")
        mapped = [m for m in mapped if str(m[3]) == p and m[0] == (proto or "tcp")]
        if not mapped:
            raise SpecError(f"no public port '{private}' published for {container}")
        for proto_, ip, hp, _ in mapped:
            print(f"{host_address(ip)}:{hp}")
        return
    for proto, ip, hp, cp in mapped:
        print(f"{cp}/{proto} -> {host_address(ip)}:{hp}")

//! `cargo xtask net`, `partition` and `heal`: show and change the faults of
//! the links a spec opts in. Each checks everything first (node, link,
//! values), then writes the toxics file and tells the running proxy to
//! re-read it; with the stack down the change waits for `up`.

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::faults::{self, Change, Mode};
use super::files::{LinkToxics, NetDir};
use super::launch;
use crate::host::ServerUser;
use crate::spec::{Link, LinkKind, StackSpec};
use crate::stack::Stack;

/// `cargo xtask net`'s arguments.
#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// The node whose links to change (without it: show every link).
    pub node: Option<String>,
    /// Latency added to every round trip, e.g. `80ms`; `0ms` removes it.
    #[arg(long, value_parser = duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub latency: Option<Duration>,
    /// Spread of the latency, e.g. `10ms`: each chunk is delayed by the
    /// latency plus or minus up to this much.
    #[arg(long, value_parser = duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub jitter: Option<Duration>,
    /// Bandwidth limit towards the client (for a replication link: the WAL
    /// stream), e.g. `1mbit`, `512kbit`, `10mb` (bytes); `off` removes it.
    #[arg(long, allow_hyphen_values = true, value_name = "RATE")]
    pub bandwidth: Option<String>,
    /// Which of the node's links (default: every link it opts in).
    #[arg(long, value_enum)]
    pub link: Option<LinkKind>,
}

/// `cargo xtask partition`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PartitionArgs {
    /// The node to cut off.
    pub node: String,
    /// Which of the node's links (default: every link it opts in; on the
    /// compose backend, the whole node leaves the engine's network).
    #[arg(long, value_enum)]
    pub link: Option<LinkKind>,
    /// How to cut the links.
    #[arg(long, value_enum, default_value_t = Mode::Blackhole)]
    pub mode: Mode,
}

/// A duration flag's value.
fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        format!("`{text}` is not a duration; write e.g. `80ms` or `1s` (never negative)")
    })
}

/// Where the faults of `stack` live and who owns them.
fn stack_net(stack: &Stack<'_>) -> Result<(NetDir, Option<ServerUser>)> {
    match stack {
        Stack::Native(native) => Ok((native.net_dir(), native.server_user().cloned())),
        Stack::Compose(compose) => compose.claim_net_dir(),
        Stack::External(_) => anyhow::bail!(
            "an external cluster has no fault proxy: drr runs one only for the stacks it runs; \
             use the cluster's own tools, or a native or compose stack"
        ),
    }
}

/// `cargo xtask net`: shows every link and its faults, or changes a
/// node's links.
pub fn run_net(stack: &Stack<'_>, args: &NetArgs) -> Result<()> {
    let spec = stack.spec();
    let change = Change::new(args.latency, args.jitter, args.bandwidth.as_deref())
        .map_err(anyhow::Error::msg)?;
    let Some(node) = &args.node else {
        anyhow::ensure!(
            change.is_empty(),
            "name the node whose links to change, e.g. `cargo xtask net replica1 --latency 80ms`"
        );
        let (net, _) = stack_net(stack)?;
        print!("{}", table(&net, &spec.fault_links(), &net.toxics()?));
        if let Stack::Compose(compose) = stack {
            for node in compose.disconnected()? {
                println!("{node}: off the network (`cargo xtask heal {node}`)");
            }
        }
        return Ok(());
    };
    let links = select(spec, node, args.link)?;
    let (net, user) = stack_net(stack)?;
    if change.is_empty() {
        print!("{}", table(&net, &links, &net.toxics()?));
        return Ok(());
    }
    edit(stack, &net, user.as_ref(), &links, |list| {
        change.apply(list)
    })
}

/// `cargo xtask partition`. On the compose backend, without `--link`, the
/// node's container leaves the engine's network (every link is cut).
pub fn run_partition(stack: &Stack<'_>, args: &PartitionArgs) -> Result<()> {
    if let (Stack::Compose(compose), None) = (stack, args.link) {
        stack.spec().node(&args.node)?;
        anyhow::ensure!(
            args.mode == Mode::Blackhole,
            "a network partition of the whole node cannot reset connections: it takes the \
             container off the network, so they hang; name a proxied link with `--link` to \
             reset it, or leave out `--mode reset`"
        );
        compose.disconnect(&args.node)?;
        println!(
            "{}: off the network (every link cut; `cargo xtask heal {}` connects it again)",
            args.node, args.node
        );
        return Ok(());
    }
    let links = select(stack.spec(), &args.node, args.link)?;
    let (net, user) = stack_net(stack)?;
    edit(stack, &net, user.as_ref(), &links, |list| {
        faults::partition(list, args.mode)
    })
}

/// `cargo xtask heal`: removes every fault of `node`'s links, or of every
/// link; on the compose backend it also puts containers a partition took
/// off the network back on it.
pub fn run_heal(stack: &Stack<'_>, node: Option<&str>) -> Result<()> {
    let spec = stack.spec();
    if let Some(node) = node {
        spec.node(node)?;
    }
    if let Stack::Compose(compose) = stack {
        for name in compose.reconnect(node)? {
            println!("{name}: back on the network");
        }
        let proxied = spec
            .fault_links()
            .iter()
            .any(|l| node.is_none_or(|n| l.node == n));
        if !proxied {
            return Ok(());
        }
    }
    let links = match node {
        Some(node) => select(spec, node, None)?,
        None => spec.fault_links(),
    };
    let (net, user) = stack_net(stack)?;
    edit(stack, &net, user.as_ref(), &links, Vec::clear)
}

/// The links of `node` the command acts on: `kind`'s, or all it opts in.
fn select(spec: &StackSpec, node: &str, kind: Option<LinkKind>) -> Result<Vec<Link>> {
    spec.node(node)?;
    let links: Vec<Link> = spec
        .fault_links()
        .into_iter()
        .filter(|l| l.node == node)
        .collect();
    anyhow::ensure!(
        !links.is_empty(),
        "node `{node}` has no link through the fault proxy; opt it in in the spec with \
         `.client_link(port)` (or `.replication_link(port)` on a replica), then run `cargo xtask up`"
    );
    let Some(kind) = kind else {
        return Ok(links);
    };
    let chosen: Vec<Link> = links.iter().filter(|l| l.kind == kind).cloned().collect();
    anyhow::ensure!(
        !chosen.is_empty(),
        "node `{node}` has no {kind} link; opt it in in the spec (`.{kind}_link(port)`) and run \
         `cargo xtask up`, or choose --link {}",
        links[0].kind
    );
    Ok(chosen)
}

/// Edits `links`' toxics under the state lock, writes them and has the
/// proxy apply them; says what each link has now.
fn edit(
    stack: &Stack<'_>,
    net: &NetDir,
    user: Option<&ServerUser>,
    links: &[Link],
    change: impl Fn(&mut Vec<super::toxic::Toxic>),
) -> Result<()> {
    let _lock = stack.lock()?;
    let mut all = net.toxics()?;
    for link in links {
        let list = all.entry(link.name()).or_default();
        change(list);
    }
    all.retain(|_, list| !list.is_empty());
    net.create(user)?;
    net.write_toxics(&all, user)?;
    let live = launch::reload(net).context("cannot apply the faults")?;
    for link in links {
        let now = all.get(&link.name()).map_or(&[][..], Vec::as_slice);
        println!("{} {}: {}", link.node, link.kind, faults::describe(now));
    }
    if !live {
        println!("the stack is down: the faults apply when `cargo xtask up` starts it");
    }
    Ok(())
}

/// Every link in `links` with its ports and faults, and whether the proxy runs.
fn table(net: &NetDir, links: &[Link], toxics: &LinkToxics) -> String {
    if links.is_empty() {
        return "no node opts a link into the fault proxy; see docs/network-faults.md\n".to_owned();
    }
    let mut out = format!(
        "{:<12} {:<12} {:>6} {:>9}  FAULTS\n",
        "NODE", "LINK", "PORT", "UPSTREAM"
    );
    for link in links {
        let now = toxics.get(&link.name()).map_or(&[][..], Vec::as_slice);
        out += &format!(
            "{:<12} {:<12} {:>6} {:>9}  {}\n",
            link.node,
            link.kind.as_str(),
            link.listen,
            link.upstream,
            faults::describe(now)
        );
    }
    out += &match launch::running_pid(net) {
        Some(pid) => format!("fault proxy: running (pid {pid})\n"),
        None => "fault proxy: not running (faults apply at `cargo xtask up`)\n".to_owned(),
    };
    out
}

/// Each node's faults in a few words (`client: latency 80ms; replication:
/// blackhole`), for `status`; nodes without faults are left out.
pub fn summaries(spec: &StackSpec, net: &NetDir) -> std::collections::BTreeMap<String, String> {
    let toxics = net.toxics().unwrap_or_default();
    let mut out: std::collections::BTreeMap<String, String> = Default::default();
    for link in spec.fault_links() {
        let Some(list) = toxics.get(&link.name()).filter(|l| !l.is_empty()) else {
            continue;
        };
        let entry = out.entry(link.node.clone()).or_default();
        if !entry.is_empty() {
            entry.push_str("; ");
        }
        entry.push_str(&format!("{}: {}", link.kind, faults::describe(list)));
    }
    out
}

/// The replicas whose replication link a partition cuts now: no WAL
/// reaches them, whatever the primary has yet to notice.
pub fn cut_replicas(spec: &StackSpec, net: &NetDir) -> Vec<String> {
    let toxics = net.toxics().unwrap_or_default();
    spec.fault_links()
        .into_iter()
        .filter(|l| l.kind == LinkKind::Replication)
        .filter(|l| toxics.get(&l.name()).is_some_and(|t| faults::cuts(t)))
        .map(|l| l.node)
        .collect()
}

/// The stack `up` waits to stream: `spec` without the replicas whose
/// replication link a partition cuts (each named in `progress`).
pub fn streaming(
    spec: &StackSpec,
    net: &NetDir,
    progress: &mut crate::progress::Progress,
) -> StackSpec {
    let cut = cut_replicas(spec, net);
    let mut expected = spec.clone();
    expected.replicas.retain(|r| !cut.contains(&r.node.name));
    for name in &cut {
        progress.note(&format!(
            "not waiting for `{name}` to stream: a partition cuts its replication link \
             (`cargo xtask heal {name}` restores it)"
        ));
    }
    expected
}

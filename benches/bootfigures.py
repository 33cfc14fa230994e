"""What the boot benches (benches/initramfs, benches/image-root) read from one boot's
`qemu/lab boot --out DIR`, and how they write their sections of benches/RESULTS.md."""
import os
import re
import statistics


def read(out, path):
    """A file of the boot's DIR, empty when it is not there."""
    try:
        with open(os.path.join(out, path), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def boot(out):
    """The boot's times from the guest kernel's clock, s: /init's start ("Run /init"), the real
    init's first line (systemd "running in system mode", the last one: dracut's initramfs runs
    systemd first), the /init's "handing over to" where it logs one; the lab's summary.txt; ok
    when the lab's check delivered and both times are there."""
    dmesg = read(out, "result/dmesg.txt") or read(out, "serial.log").replace("\r", "")
    stamped = [(float(m.group(1)), line) for line in dmesg.splitlines() if (m := re.match(r"\[\s*([0-9.]+)\]", line))]
    init = next((t for t, line in stamped if "Run /init as init process" in line), None)
    real = [t for t, line in stamped if re.search(r"systemd\[1\]: systemd \d+.* running in system mode", line)]
    handoff = next((t for t, line in stamped if re.search(r"(stateless|busybox-init): handing over to", line)), None)
    summary = dict(line.split("=", 1) for line in read(out, "summary.txt").splitlines() if "=" in line)
    return {
        "ok": summary.get("result") == "yes" and init is not None and bool(real),
        "init": init,
        "real": real[-1] if real else None,
        "handoff": handoff,
        "summary": summary,
    }


def client_rpcs(out):
    """The client's NFS RPCs by operation, {op: [calls, bytes sent and received]}, from the
    check's copy of /proc/self/mountstats (the lab's check, after multi-user.target): every NFS
    mount summed (a directory root's at /, an image root's export at /run/stateless/export), each
    export once (a second mount of one export shows the same counters again)."""
    ops, seen, inside = {}, set(), False
    for line in read(out, "result/mountstats.txt").splitlines():
        if line.startswith("device "):
            m = re.match(r"device (\S+) mounted on \S+ with fstype nfs4? ", line)
            inside = bool(m) and m.group(1) not in seen
            if inside:
                seen.add(m.group(1))
        elif inside and re.match(r"\s+[A-Z_0-9]+: \d", line):
            f = line.split()
            got = ops.setdefault(f[0].rstrip(":"), [0, 0])
            got[0] += int(f[1])
            got[1] += int(f[4]) + int(f[5])
    return ops


def med(v):
    """The median with min-max, or n/a."""
    return f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" if v else "n/a"


def machine():
    """CPUs, their model and RAM of this machine, for a section's first lines."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    ram = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    return f"{os.cpu_count()} CPUs ({cpu}), {ram} GiB"


def _sections(text, level):
    """text cut at its headings of `level` (outside code fences): the text before the first,
    then [heading, text] each."""
    parts, fenced = [["", ""]], False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#" * level + " "):
            parts.append([line.rstrip("\n"), ""])
        else:
            parts[-1][1] += line
    return parts


def _parts(path):
    """The `# ` parts of the file at path ([_sections] at level 1); none when it is missing."""
    try:
        with open(path) as f:
            return _sections(f.read(), 1)
    except OSError:
        return _sections("", 1)


def write_part(title, text, path="benches/RESULTS.md"):
    """Replaces the part of benches/RESULTS.md whose heading is `# title` or starts with it
    (`# title: ...`) with text (which starts with its own `# ` heading), in its place, adding it
    at the end when missing; every other part is kept."""
    parts = _parts(path)
    new = text.rstrip() + "\n"
    at = next((i for i, p in enumerate(parts) if i and (p[0] == f"# {title}" or p[0].startswith(f"# {title}:"))), None)
    chunks = [(p[0] + "\n" + p[1]).rstrip() + "\n" for p in parts[1:]]
    if at is None:
        chunks.append(new)
    else:
        chunks[at - 1] = new
    with open(path, "w") as f:
        f.write((parts[0][1] + "\n".join(chunks)).lstrip("\n"))
    print(f"written: {path} ({title})")


def write_section(title, key, text, path="benches/RESULTS.md"):
    """Replaces the `## key...` section of the `# title` part of benches/RESULTS.md with text
    (which starts with its own `## key` heading), adding the part or the section when missing;
    every other part and section is kept. A part's "## Debian N" sections go by N, before its
    other sections (notes written by hand)."""
    parts = _parts(path)
    part = next((p for p in parts[1:] if p[0] == f"# {title}"), None)
    if part is None:
        part = [f"# {title}", "\n"]
        parts.append(part)
    intro, *subs = _sections(part[1], 2)
    subs = [s for s in subs if s[0] != f"## {key}" and not s[0].startswith(f"## {key} ")]
    subs.append(["", text.rstrip() + "\n"])
    number = lambda s: int(m.group(1)) if (m := re.match(r"## Debian (\d+)", s[0] or s[1])) else 1000
    kept = [intro[1].strip() + "\n"] if intro[1].strip() else []
    part[1] = "\n" + "\n".join(kept + [(s[0] + "\n" + s[1]).strip() + "\n" for s in sorted(subs, key=number)])
    out = parts[0][1] + "\n".join((p[0] + "\n" + p[1]).rstrip() + "\n" for p in parts[1:])
    with open(path, "w") as f:
        f.write(out.lstrip("\n"))
    print(f"written: {path} ({title}: {key})")

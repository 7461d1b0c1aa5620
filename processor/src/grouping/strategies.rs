//! Component-tree strategies of `newstyle:2023-01-11`: frames, stack traces, (chained)
//! exceptions and exception groups, threads, messages, security reports and templates.
//!
//! Stack-trace based strategies produce an `app` tree (only in-app frames count) and a
//! `system` tree (every frame); the others produce a `default` tree.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::component::Component;
use super::enhancer::{apply_group_ops, RuleCache};
use super::event::{behavior_family, Csp, Event, Exception, Frame, Stacktrace};
use super::functions::trim_function_name;
use super::parameterize::normalize_message;

/// Variant name → component, in production order.
pub type Variants = Vec<(&'static str, Component)>;

#[allow(clippy::expect_used)]
fn re(p: &str) -> Regex {
    // Fixed patterns: failing to compile is a programming error.
    Regex::new(p).expect("static regex compiles")
}

static RUBY_ERB: LazyLock<Regex> = LazyLock::new(|| re(r"__\d{4,}_\d{4,}$"));
static JAVA_REFLECT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(sun\.reflect\.Generated(?:Serialization)?ConstructorAccessor)\d+"));
static JAVA_CGLIB: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\$\$[\w_]+?CGLIB\$\$)[a-fA-F0-9]+(_[0-9]+)?"));
static JAVA_ASSIST: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\$\$_javassist)(?:_seam)?(?:_[0-9]+)?"));
static CLOJURE: LazyLock<Regex> = LazyLock::new(|| re(r"(\$fn__)\d+"));
static JAVA_ENHANCER_BY: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\$\$?EnhancerBy[\w_]+?\$?\$)[a-fA-F0-9]+(_[0-9]+)?"));
static JAVA_FAST_CLASS_BY: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\$\$?FastClassBy[\w_]+?\$?\$)[a-fA-F0-9]+(_[0-9]+)?"));
static JAVA_HIBERNATE_PROXY: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\$\$?HibernateProxy\$?\$)\w+(_[0-9]+)?"));

/// Event data shared by the strategies (stack-trace rules were applied beforehand).
pub struct Ctx<'a> {
    pub event: &'a Event<'a>,
    /// Where stack-trace component trees are remembered across events (the config's memo).
    pub memo: Option<&'a RuleCache>,
    /// Only the hashes will be read: text that cannot reach a hash (the value of an
    /// exception whose stack trace contributes in every variant) need not be computed, and
    /// strategies after the first contributing one are not run ([`run_all`]).
    pub hashes_only: bool,
    /// Set when a strategy read an exception's value or the event's message in a way that
    /// can reach a hash. The whole-result memo (`super::memo`) keys everything else the
    /// strategies read, so a result computed without this is the same for any other value
    /// or message.
    pub read_text: std::cell::Cell<bool>,
}

fn has_url_origin(path: Option<&str>, allow_file_origin: bool) -> bool {
    match path {
        Some(p)
            if ["http:", "https:", "applewebdata:", "blob:"]
                .iter()
                .any(|s| p.starts_with(s)) =>
        {
            true
        }
        Some(p) if p.starts_with("file:") => !allow_file_origin,
        _ => false,
    }
}

fn frame_is_url(f: &Frame) -> bool {
    f.abs_path.as_deref().is_some_and(|p| {
        ["blob:", "file:", "http:", "https:", "applewebdata:"]
            .iter()
            .any(|s| p.starts_with(s))
    })
}

fn filename_component(f: &Frame, platform: Option<&str>) -> Component {
    let Some(filename) = &f.filename else {
        return Component::empty("filename");
    };
    let base = filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(filename)
        .to_lowercase();
    let mut c = Component::leaf("filename", base.clone());
    if has_url_origin(f.abs_path.as_deref(), true) {
        c.set(false, "ignored because frame points to a URL");
    } else if base == "<anonymous>" {
        c.set(false, "anonymous filename discarded");
    } else if base == "[native code]" {
        c.set(false, "native code indicated by filename");
    } else if platform == Some("java") {
        let cleaned = JAVA_ASSIST.replace_all(&base, "$1<auto>");
        if cleaned != base {
            c.replace_value(cleaned.into_owned(), "cleaned javassist parts");
        }
    }
    c
}

fn module_component(f: &Frame, platform: Option<&str>) -> Component {
    let Some(module) = f.module.as_deref() else {
        return Component::empty("module");
    };
    let mut c = Component::leaf("module", module);
    if platform == Some("javascript")
        && module.contains('/')
        && f.abs_path.as_deref().is_some_and(|p| p.ends_with(module))
    {
        c.set(false, "ignored bad javascript module");
    } else if platform == Some("java") {
        if module.contains("$$Lambda$") {
            c.set(false, "ignored java lambda");
        }
        const SUN: &str = "sun.reflect.GeneratedMethodAccessor";
        const JDK: &str = "jdk.internal.reflect.GeneratedMethodAccessor";
        if module.starts_with(SUN) {
            c.values = vec![super::component::Node::Value(SUN.to_owned())];
            c.hint = Some("removed reflection marker".into());
        } else if module.starts_with(JDK) {
            c.values = vec![super::component::Node::Value(JDK.to_owned())];
            c.hint = Some("removed reflection marker".into());
        } else if module.contains('$') || module.contains("Generated") {
            // Every codegen marker contains `$` except the reflection accessors (`Generated`),
            // so plain class names skip the regexes.
            let mut m = module.to_owned();
            for re in [
                &*JAVA_REFLECT,
                &*JAVA_CGLIB,
                &*JAVA_ASSIST,
                &*CLOJURE,
                &*JAVA_ENHANCER_BY,
                &*JAVA_FAST_CLASS_BY,
                &*JAVA_HIBERNATE_PROXY,
            ] {
                if let std::borrow::Cow::Owned(replaced) = re.replace_all(&m, "$1<auto>") {
                    m = replaced;
                }
            }
            if m != module {
                let contributes = c.contributes;
                c.replace_value(m, "removed codegen marker");
                c.contributes = contributes;
            }
        }
    }
    c
}

fn context_line_component(f: &Frame, platform: Option<&str>) -> Component {
    let raw = f.context_line.as_deref().unwrap_or("");
    // Whitespace runs (tabs included) collapse to one space, built in one buffer.
    let mut line = String::with_capacity(raw.len());
    for word in raw.split_whitespace() {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.is_empty() {
        return Component::empty("context-line");
    }
    let mut c = Component::leaf("context-line", line);
    if raw.chars().count() > 120 {
        c.set(false, "discarded because line too long");
    } else if behavior_family(platform) == "javascript"
        && f.function.is_none()
        && has_url_origin(f.abs_path.as_deref(), false)
    {
        c.set(false, "discarded because from URL origin and no function");
    }
    c
}

fn function_component(
    f: &Frame,
    platform: Option<&str>,
    context_line_available: bool,
) -> Component {
    let func = if platform == Some("csharp") {
        f.raw_function
            .as_deref()
            .or(f.function.as_deref())
            .map(str::to_owned)
    } else {
        match (&f.function, &f.raw_function) {
            (Some(func), None) => Some(trim_function_name(func, platform).into_owned()),
            (Some(func), Some(_)) => Some(func.to_string()),
            (None, raw) => raw.as_deref().map(str::to_owned),
        }
    };
    let Some(func) = func.filter(|s| !s.is_empty()) else {
        return Component::empty("function");
    };
    let mut c = Component::leaf("function", func.clone());
    let family = behavior_family(platform);
    match platform {
        Some("ruby") => {
            if func.starts_with("block ") {
                c.replace_value("block".into(), "ruby block");
            } else {
                let cleaned = RUBY_ERB.replace(&func, "");
                if cleaned != func {
                    c.replace_value(
                        cleaned.into_owned(),
                        "removed generated erb template suffix",
                    );
                }
            }
        }
        Some("php") => {
            if func.starts_with("[Anonymous") || func.starts_with("class@anonymous\0") {
                c.set(false, "ignored anonymous function");
            }
            if func.starts_with("class@anonymous") {
                let short = func.rsplit("::").next().unwrap_or(&func).to_owned();
                if short != func {
                    let contributes = c.contributes;
                    c.replace_value(short, "anonymous class method");
                    c.contributes = contributes;
                }
            }
        }
        Some("java") if func.starts_with("lambda$") => c.set(false, "ignored lambda function"),
        _ if family == "native" && (func == "<redacted>" || func == "<unknown>") => {
            c.set(false, "ignored unknown function")
        }
        _ if family == "javascript" => {
            let short = func.rsplit('.').next().unwrap_or(&func).to_owned();
            if short != func {
                c.replace_value(short, "trimmed javascript function");
            }
            if f.sourcemap && context_line_available {
                c.set(
                    false,
                    "ignored because sourcemap used and context line available",
                );
            }
        }
        _ => {}
    }
    c
}

/// The component of one frame.
pub fn frame_component(f: &Frame, event_platform: Option<&str>, is_recursion: bool) -> Component {
    let platform = f.platform.as_deref().or(event_platform);
    let mut filename = filename_component(f, platform);
    let module = module_component(f, platform);
    if module.contributes && filename.contributes {
        filename.set(false, "module takes precedence");
    }
    let context_line = matches!(
        platform,
        Some("javascript" | "node" | "python" | "php" | "ruby")
    )
    .then(|| context_line_component(f, platform));
    let cl_available = context_line.as_ref().is_some_and(|c| c.contributes);
    let mut function = function_component(f, platform, cl_available);
    // Like Sentry, the frame's own flag is decided from the children as built, before the
    // JavaScript clean-up below changes the function component.
    let fn_contrib_before = function.contributes;

    let js = behavior_family(platform) == "javascript";
    let mut low_quality = false;
    if js {
        let func = f
            .raw_function
            .as_deref()
            .or(f.function.as_deref())
            .map(|s| s.rsplit('.').next().unwrap_or(s));
        match func {
            None | Some("") => function.contributes = false,
            Some(name) => {
                if matches!(
                    name,
                    "?" | "<anonymous function>" | "<anonymous>" | "Anonymous function"
                ) || name.ends_with("/<")
                {
                    function.set(false, "ignored unknown function name");
                }
            }
        }
        low_quality = func == Some("eval")
            || matches!(
                f.abs_path.as_deref(),
                Some("[native code]" | "native code" | "eval code" | "<anonymous>")
            );
    }
    let frame_contributes = module.contributes
        || filename.contributes
        || fn_contrib_before
        || context_line.as_ref().is_some_and(|c| c.contributes);
    let mut children = vec![module, filename, function];
    children.extend(context_line);
    let mut rv = Component::parent("frame", children);
    rv.contributes = frame_contributes;
    if low_quality {
        rv.set(false, "ignored low quality javascript frame");
    }
    if is_recursion {
        rv.set(false, "ignored due to recursion");
    }
    rv
}

fn is_recursion(a: &Frame, b: Option<&Frame>) -> bool {
    let Some(b) = b else { return false };
    a.abs_path == b.abs_path
        && a.package == b.package
        && a.module == b.module
        && a.filename == b.filename
        && a.function == b.function
        && a.lineno == b.lineno
        && a.colno == b.colno
}

/// The `app` and `system` trees of one stack trace, replayed from the config's memo when
/// the same stack trace was grouped before. The key ([`Stacktrace::memo_key`], see
/// `enhancer::stack_key`) covers the frames as parsed, so it also covers everything the tree
/// builder reads: the frames after the rules and the rules' group decisions are functions of
/// the keyed inputs and the config's rule sets.
fn stacktrace_variants(st: &Stacktrace, ctx: &Ctx<'_>) -> Variants {
    let (Some(memo), Some(key)) = (ctx.memo, st.memo_key) else {
        return build_stacktrace_variants(st, ctx);
    };
    if let Some(v) = memo.variants(key) {
        return v;
    }
    let mut v = build_stacktrace_variants(st, ctx);
    // Replays of these trees are hashed for every event that carries the stack trace.
    for (_, c) in &mut v {
        c.seal();
    }
    memo.remember_variants(key, &v, st.frames.len());
    v
}

/// Builds the `app` and `system` trees of one stack trace. Each frame's component is built
/// once and shared: the app tree is the same frames with the non-app ones switched off.
fn build_stacktrace_variants(st: &Stacktrace, ctx: &Ctx<'_>) -> Variants {
    let platform = ctx.event.platform.as_deref();
    let mut system: Vec<Component> = Vec::with_capacity(st.frames.len());
    let mut prev: Option<&Frame> = None;
    for f in &st.frames {
        system.push(frame_component(f, platform, is_recursion(f, prev)));
        prev = Some(f);
    }
    let mut app = system.clone();
    for (c, f) in app.iter_mut().zip(&st.frames) {
        if f.in_app != Some(true) {
            c.set(false, "non app frame");
        }
    }
    let app = finish_stacktrace_variant(st, true, app, platform);
    let system = finish_stacktrace_variant(st, false, system, platform);
    vec![("app", app), ("system", system)]
}

fn finish_stacktrace_variant(
    st: &Stacktrace,
    app: bool,
    mut frames: Vec<Component>,
    platform: Option<&str>,
) -> Component {
    if st.frames.len() == 1 && frames[0].contributes {
        let f = &st.frames[0];
        if behavior_family(f.platform.as_deref().or(platform)) == "javascript"
            && f.function.is_none()
            && frame_is_url(f)
        {
            frames[0].set(false, "ignored single non-URL JavaScript frame");
        }
    }
    apply_group_ops(&st.group_ops, &mut frames);
    if app {
        for (c, f) in frames.iter_mut().zip(&st.frames) {
            if f.in_app != Some(true) && c.contributes {
                c.set(false, "non app frame");
            }
        }
    }
    let mut rv = Component::parent("stacktrace", frames);
    if !rv.contributes {
        let what = if st.frames.is_empty() {
            "frames"
        } else if app && !st.frames.iter().any(|f| f.in_app == Some(true)) {
            "in-app frames"
        } else {
            "contributing frames"
        };
        rv.hint = Some(format!("ignored because it contains no {what}").into());
    }
    rv
}

fn single_exception(e: &Exception, ctx: &Ctx<'_>) -> Variants {
    let mut type_c = Component::leaves("type", e.ty.iter().map(|t| t.to_string()).collect());
    if e.synthetic {
        type_c.set(false, "ignored because exception is synthetic");
    }
    let ns_error = e
        .ns_error
        .as_ref()
        .map(|(d, c)| Component::leaves("ns-error", d.iter().chain(c.iter()).cloned().collect()));
    let st_variants = match &e.stacktrace {
        Some(st) => stacktrace_variants(st, ctx),
        None => vec![("app", Component::empty("stacktrace"))],
    };
    // The value is parameterized once and shared by the variants. It does not contribute
    // where the stack trace does, and nothing switches a node back on later, so when only
    // hashes are wanted and the stack trace contributes everywhere, its text is left as is.
    // (Alone in the event: exception-group filtering compares whole trees, values included.)
    let value_unused = ctx.hashes_only
        && ctx.event.exceptions.as_ref().is_some_and(|l| l.len() == 1)
        && st_variants.iter().all(|(_, st)| st.contributes);
    let mut value_base = Component::empty("value");
    if !value_unused {
        // Absent or present, the value now shapes the trees.
        ctx.read_text.set(true);
    }
    if value_unused {
        if let Some(raw) = e.value.as_deref().filter(|v| !v.is_empty()) {
            value_base = Component::leaf("value", raw);
        }
    } else if let Some(raw) = &e.value {
        let normalized = normalize_message(raw);
        if !normalized.is_empty() {
            let changed = &normalized != raw;
            value_base = Component::leaf("value", normalized);
            if changed {
                value_base.hint = Some("stripped event-specific values".into());
            }
        }
    }
    st_variants
        .into_iter()
        .map(|(name, st)| {
            let mut value = value_base.clone();
            if st.contributes && value.contributes {
                value.set(false, "ignored because stacktrace takes precedence");
            }
            if ns_error.as_ref().is_some_and(|n| n.contributes) && value.contributes {
                value.set(false, "ignored because ns-error info takes precedence");
            }
            let mut children = vec![st, type_c.clone()];
            children.extend(ns_error.clone());
            children.push(value);
            (name, Component::parent("exception", children))
        })
        .collect()
}

/// Bound for walking exception-group trees (malformed input may contain cycles).
const MAX_GROUP_DEPTH: usize = 64;

/// Sentry's exception-group filter (RFC 0079); `None` means "use all exceptions".
fn filter_exception_groups(excs: &[Exception], comps: &[Variants]) -> Option<Vec<usize>> {
    if excs.len() <= 1 {
        return None;
    }
    let mut node_exc: HashMap<i64, usize> = HashMap::new();
    let mut children: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, e) in excs.iter().enumerate().rev() {
        let id = e.exception_id?;
        node_exc.insert(id, i);
        children.entry(id).or_default();
        if let Some(p) = e.parent_id {
            children.entry(p).or_default().push(i);
        }
    }
    let root = *node_exc.get(&0)?;
    let kids = |i: usize| -> &[usize] {
        excs[i]
            .exception_id
            .and_then(|id| children.get(&id))
            .map_or(&[], Vec::as_slice)
    };
    fn top_level(
        i: usize,
        excs: &[Exception],
        kids: &dyn Fn(usize) -> Vec<usize>,
        depth: usize,
        out: &mut Vec<usize>,
    ) -> Option<()> {
        if depth > MAX_GROUP_DEPTH {
            return None;
        }
        if excs[i].is_exception_group {
            for c in kids(i) {
                top_level(c, excs, kids, depth + 1, out)?;
            }
        } else {
            out.push(i);
        }
        Some(())
    }
    let kids_owned = |i: usize| kids(i).to_vec();
    let mut tops = Vec::new();
    top_level(root, excs, &kids_owned, 0, &mut tops)?;
    // Stable sort by type name, descending.
    tops.sort_by(|a, b| {
        let ta = excs[*a].ty.as_deref().unwrap_or("None");
        let tb = excs[*b].ty.as_deref().unwrap_or("None");
        tb.cmp(ta)
    });
    let mut distinct: Vec<usize> = Vec::new();
    for t in tops {
        if distinct.last().is_none_or(|&l| comps[l] != comps[t]) {
            distinct.push(t);
        }
    }
    if distinct.len() == 1 {
        let mut path = vec![distinct[0]];
        let mut cur = distinct[0];
        while let Some(&first) = kids(cur).first() {
            if path.len() > MAX_GROUP_DEPTH {
                return None;
            }
            path.push(first);
            cur = first;
        }
        return Some(path);
    }
    distinct.push(root);
    Some(distinct)
}

fn chained_exception(excs: &[Exception], ctx: &Ctx<'_>) -> Variants {
    let comps: Vec<Variants> = excs.iter().map(|e| single_exception(e, ctx)).collect();
    let chosen: Vec<usize> =
        filter_exception_groups(excs, &comps).unwrap_or_else(|| (0..excs.len()).collect());
    // Take the chosen components out (an exception is chosen at most once, but stay safe).
    let mut slots: Vec<Option<Variants>> = comps.into_iter().map(Some).collect();
    let mut picked: Vec<Variants> = Vec::with_capacity(chosen.len());
    for &i in &chosen {
        if let Some(v) = slots.get_mut(i).and_then(Option::take) {
            picked.push(v);
        }
    }
    if picked.len() == 1 {
        return picked.pop().unwrap_or_default();
    }
    let mut by_name: Vec<(&'static str, Vec<Component>)> = Vec::new();
    for variants in picked {
        for (name, c) in variants {
            match by_name.iter_mut().find(|(n, _)| *n == name) {
                Some((_, list)) => list.push(c),
                None => by_name.push((name, vec![c])),
            }
        }
    }
    by_name
        .into_iter()
        .map(|(n, list)| (n, Component::parent("chained-exception", list)))
        .collect()
}

fn threads(ctx: &Ctx<'_>) -> Variants {
    let threads = ctx.event.threads.as_deref().unwrap_or(&[]);
    let pick = |sel: Vec<&super::event::Thread>| -> Option<Variants> {
        if sel.len() != 1 {
            return None;
        }
        let Some(st) = &sel[0].stacktrace else {
            let mut c = Component::empty("threads");
            c.hint = Some("thread has no stacktrace".into());
            return Some(vec![("app", c)]);
        };
        Some(
            stacktrace_variants(st, ctx)
                .into_iter()
                .map(|(n, c)| (n, Component::parent("threads", vec![c])))
                .collect(),
        )
    };
    pick(threads.iter().filter(|t| t.crashed).collect())
        .or_else(|| pick(threads.iter().filter(|t| t.current).collect()))
        .or_else(|| pick(threads.iter().collect()))
        .unwrap_or_else(|| {
            let mut c = Component::empty("threads");
            c.hint = Some(
                format!(
                    "ignored because does not contain exactly one crashing, one current or just one thread, instead contains {} threads",
                    threads.len()
                )
                .into(),
            );
            vec![("app", c)]
        })
}

/// Makes `system` non-contributing when it hashes like `app`, then (Sentry's
/// `remove_non_stacktrace_variants`) drops variants without a contributing stack trace when
/// another variant has one.
/// Whether two lists of strings concatenate to the same bytes (what equal md5 hashes of
/// them mean), without building either concatenation.
fn same_concatenation(a: &[&str], b: &[&str]) -> bool {
    let len = |l: &[&str]| l.iter().map(|s| s.len()).sum::<usize>();
    if len(a) != len(b) {
        return false;
    }
    let (mut ia, mut ib) = (
        a.iter().map(|s| s.as_bytes()),
        b.iter().map(|s| s.as_bytes()),
    );
    let (mut ca, mut cb): (&[u8], &[u8]) = (&[], &[]);
    loop {
        while ca.is_empty() {
            match ia.next() {
                Some(x) => ca = x,
                None => return cb.is_empty() && ib.all(<[u8]>::is_empty),
            }
        }
        while cb.is_empty() {
            match ib.next() {
                Some(x) => cb = x,
                None => return false,
            }
        }
        let n = ca.len().min(cb.len());
        if ca[..n] != cb[..n] {
            return false;
        }
        ca = &ca[n..];
        cb = &cb[n..];
    }
}

fn postprocess_stack_variants(mut vars: Variants) -> Variants {
    // "Same hash" is decided on the hashed bytes themselves (the md5 input), which is the
    // same answer without computing two digests per event.
    let app_input: Option<Vec<&str>> = vars
        .iter()
        .find(|(n, c)| *n == "app" && c.contributes)
        .map(|(_, c)| c.contributing_chunks());
    let system_matches: Vec<bool> = vars
        .iter()
        .map(|(n, c)| {
            *n == "system"
                && c.contributes
                && app_input
                    .as_deref()
                    .is_some_and(|app| same_concatenation(app, &c.contributing_chunks()))
        })
        .collect();
    drop(app_input);
    for ((_, c), matches) in vars.iter_mut().zip(system_matches) {
        if matches {
            c.set(false, "ignored because hash matches app variant");
        }
    }
    if vars.len() > 1 {
        let with_st: Vec<bool> = vars
            .iter()
            .map(|(_, c)| {
                (c.id == "stacktrace" && c.contributes) || c.has_contributing("stacktrace")
            })
            .collect();
        if with_st.iter().any(|b| *b) {
            for ((_, c), has) in vars.iter_mut().zip(with_st) {
                if !has && c.contributes {
                    c.set(false, "ignored because this variant does not have a contributing stacktrace, but others do");
                }
            }
        }
    }
    vars
}

fn normalize_uri(value: &str) -> String {
    if value.is_empty() || value == "'self'" || value == "self" {
        return "'self'".into();
    }
    if !value.contains(':') {
        return format!("{value}:");
    }
    if value.ends_with(':') {
        return value.to_owned();
    }
    match value.find("://") {
        Some(i) => {
            let rest = &value[i + 3..];
            rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())].to_owned()
        }
        None => value
            .split(':')
            .next()
            .map(|s| format!("{s}:"))
            .unwrap_or_default(),
    }
}

fn csp(c: &Csp) -> Component {
    let uri = normalize_uri(c.blocked_uri.as_deref().unwrap_or(""));
    let directive = c.effective_directive.clone().unwrap_or_default();
    let local_violation = match &c.violated_directive {
        Some(v) if directive == "script-src" && uri == "'self'" => {
            if v.contains("'unsafe-inline'") {
                Some("unsafe-inline")
            } else if v.contains("'unsafe-eval'") {
                Some("unsafe-eval")
            } else {
                None
            }
        }
        _ => None,
    };
    let (violation, uri_c) = match local_violation {
        Some(t) => {
            let mut u = Component::leaf("uri", uri);
            u.set(false, "violation takes precedence");
            (Component::leaf("violation", format!("'{t}'")), u)
        }
        None => {
            let mut v = Component::empty("violation");
            v.hint = Some("not a local script violation".into());
            (v, Component::leaf("uri", uri))
        }
    };
    Component::parent(
        "csp",
        vec![Component::leaf("salt", directive), violation, uri_c],
    )
}

/// One strategy's result: its name and variants.
pub struct StrategyResult {
    pub name: &'static str,
    pub variants: Variants,
}

/// Runs every applicable strategy in priority order. With [`Ctx::hashes_only`] it stops after
/// the first strategy with a contributing variant: the grouping turns every later strategy's
/// variants off (the first contributing strategy takes precedence), so they cannot reach a
/// hash.
pub fn run_all(ctx: &Ctx<'_>) -> Vec<StrategyResult> {
    let ev = ctx.event;
    let mut out = Vec::new();
    let done = |out: &Vec<StrategyResult>| {
        ctx.hashes_only
            && out
                .last()
                .is_some_and(|r| r.variants.iter().any(|(_, c)| c.contributes))
    };
    if let Some(excs) = ev.exceptions.as_deref().filter(|e| !e.is_empty()) {
        out.push(StrategyResult {
            name: "exception",
            variants: postprocess_stack_variants(chained_exception(excs, ctx)),
        });
        if done(&out) {
            return out;
        }
    }
    if ev.threads.is_some() {
        out.push(StrategyResult {
            name: "threads",
            variants: postprocess_stack_variants(threads(ctx)),
        });
        if done(&out) {
            return out;
        }
    }
    if let Some(st) = &ev.stacktrace {
        out.push(StrategyResult {
            name: "stacktrace",
            variants: postprocess_stack_variants(stacktrace_variants(st, ctx)),
        });
        if done(&out) {
            return out;
        }
    }
    if let Some((filename, context_line)) = &ev.template {
        let f = filename.as_deref().map(|f| {
            Component::leaf(
                "filename",
                f.rsplit(['/', '\\']).next().unwrap_or(f).to_lowercase(),
            )
        });
        let cl = context_line.as_deref().map(|l| {
            Component::leaf(
                "context-line",
                l.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        });
        let children = vec![
            f.unwrap_or_else(|| Component::empty("filename")),
            cl.unwrap_or_else(|| Component::empty("context-line")),
        ];
        out.push(StrategyResult {
            name: "template",
            variants: vec![("default", Component::parent("template", children))],
        });
        if done(&out) {
            return out;
        }
    }
    if let Some(c) = &ev.csp {
        out.push(StrategyResult {
            name: "csp",
            variants: vec![("default", csp(c))],
        });
        if done(&out) {
            return out;
        }
    }
    if let Some((salt, host)) = &ev.cert_report {
        let children = vec![
            Component::leaf("salt", *salt),
            Component::leaves("hostname", host.iter().cloned().collect()),
        ];
        out.push(StrategyResult {
            name: salt,
            variants: vec![("default", Component::parent(salt, children))],
        });
        if done(&out) {
            return out;
        }
    }
    // Whether there is a message, and its text, now shape the result.
    ctx.read_text.set(true);
    if let Some(raw) = ev.log_message.as_deref().or(ev.log_formatted.as_deref()) {
        let normalized = normalize_message(raw);
        let changed = normalized != raw;
        let mut c = Component::leaf("message", normalized);
        if changed {
            c.hint = Some("stripped event-specific values".into());
        }
        out.push(StrategyResult {
            name: "message",
            variants: vec![("default", c)],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_concatenation_compares_the_hashed_bytes() {
        assert!(same_concatenation(&["ab", "c"], &["a", "bc"]));
        assert!(same_concatenation(&["", "abc", ""], &["abc"]));
        assert!(same_concatenation(&[], &["", ""]));
        assert!(!same_concatenation(&["ab", "c"], &["ab", "d"]));
        assert!(!same_concatenation(&["abc"], &["ab"]));
        for (a, b) in [(vec!["x", "yz"], vec!["xy", "z"]), (vec!["q"], vec!["r"])] {
            assert_eq!(
                same_concatenation(&a, &b),
                super::super::hash_values(a.iter().copied())
                    == super::super::hash_values(b.iter().copied())
            );
        }
    }
}

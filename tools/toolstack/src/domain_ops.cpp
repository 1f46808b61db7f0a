#include "pvkit/toolstack/domain_ops.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <string>

#include "pvkit/store/perms.hpp"

namespace pvkit::toolstack {

namespace {

StoreResult<void> fail(StoreError e) { return Unexpected{e}; }

// Reads a node; ENOENT becomes an empty optional, other errors pass.
StoreResult<std::optional<std::string>> read_optional(StoreClient& client, const std::string& path,
                                                      TxId tx = 0) {
    auto r = client.read(path, tx);
    if (r)
        return std::optional<std::string>(std::move(r.value()));
    if (r.error() == StoreError::kNoEnt)
        return std::optional<std::string>();
    return Unexpected{r.error()};
}

XenbusState read_state(StoreClient& client, const std::string& path) {
    auto v = read_optional(client, path);
    if (!v || !v->has_value())
        return XenbusState::kUnknown;
    return parse_xenbus_state(**v).value_or(XenbusState::kUnknown);
}

StoreResult<std::vector<pvkit_domid_t>> domids_in_store(StoreClient& client, TxId tx) {
    auto names = client.directory("/local/domain", tx);
    std::vector<pvkit_domid_t> out;
    if (!names) {
        if (names.error() == StoreError::kNoEnt)
            return out;
        return Unexpected{names.error()};
    }
    for (const std::string& n : names.value())
        if (auto d = parse_domid(n))
            out.push_back(*d);
    return out;
}

} // namespace

StoreResult<void> in_transaction(StoreClient& client,
                                 const std::function<StoreResult<void>(TxId)>& body,
                                 int attempts) {
    for (int i = 0; i < attempts; ++i) {
        auto tx = client.transaction_start();
        if (!tx)
            return fail(tx.error());
        auto r = body(tx.value());
        if (!r) {
            (void)client.transaction_end(tx.value(), false);
            return r;
        }
        auto end = client.transaction_end(tx.value(), true);
        if (end)
            return {};
        if (end.error() != StoreError::kAgain)
            return end;
    }
    return fail(StoreError::kAgain);
}

StoreResult<void> apply_ops(StoreClient& client, std::span<const StoreOp> ops, TxId tx) {
    for (const StoreOp& op : ops) {
        StoreResult<void> r = op.kind == StoreOp::Kind::kMkdir ? client.mkdir(op.path, tx)
                                                               : client.write(op.path, op.value, tx);
        if (!r && !(op.kind == StoreOp::Kind::kMkdir && r.error() == StoreError::kExist))
            return r;
        if (op.perms.empty())
            continue;
        std::vector<std::string_view> texts(op.perms.begin(), op.perms.end());
        auto perms = store::parse_perms(texts);
        if (!perms)
            return fail(StoreError::kInval); // store_layout produced a bad perm: a bug
        if (auto p = client.set_perms(op.path, *perms, tx); !p)
            return p;
    }
    return {};
}

StoreResult<void> remove_paths(StoreClient& client, std::span<const std::string> paths, TxId tx) {
    for (const std::string& path : paths) {
        auto r = client.rm(path, tx);
        if (!r && r.error() != StoreError::kNoEnt)
            return r;
    }
    return {};
}

StoreResult<pvkit_domid_t> create_domain(StoreClient& client, const DomainConfig& config,
                                         std::optional<pid_t> owner_pid) {
    pvkit_domid_t chosen = 0;
    auto r = in_transaction(client, [&](TxId tx) -> StoreResult<void> {
        auto taken = read_optional(client, vm_path(config.name), tx);
        if (!taken)
            return fail(taken.error());
        if (taken->has_value())
            return fail(StoreError::kExist);
        auto in_use = domids_in_store(client, tx);
        if (!in_use)
            return fail(in_use.error());
        auto domid = allocate_domid(in_use.value());
        if (!domid)
            return fail(StoreError::kNoSpc);
        chosen = *domid;
        auto ops = domain_create_ops(chosen, config);
        if (!ops)
            return fail(StoreError::kInval);
        if (owner_pid) {
            StoreOp pid_op;
            pid_op.path = domain_path(chosen) + "/pid";
            pid_op.value = std::to_string(*owner_pid);
            pid_op.perms = {perm_none(PVKIT_DOMID_HOST), perm_read(chosen)};
            ops->push_back(std::move(pid_op));
        }
        return apply_ops(client, ops.value(), tx);
    });
    if (!r)
        return Unexpected{r.error()};
    return chosen;
}

StoreResult<DomainSummary> describe_domain(StoreClient& client, pvkit_domid_t domid) {
    const std::string home = domain_path(domid);
    DomainSummary s;
    s.domid = domid;
    auto name = read_optional(client, home + "/name");
    if (!name)
        return Unexpected{name.error()};
    s.name = name->value_or("");
    if (auto t = read_optional(client, home + "/type"); t)
        s.type = t->value_or("");
    if (auto m = read_optional(client, home + "/memory/target"); m && m->has_value()) {
        // A decimal KiB count; anything else is left out.
        const std::string& text = **m;
        std::uint64_t kib = 0;
        const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), kib);
        if (!text.empty() && err == std::errc() && end == text.data() + text.size())
            s.memory_kib = kib;
    }
    if (auto p = read_optional(client, home + "/pid"); p && p->has_value()) {
        // A pid is a positive decimal; anything else is left out.
        const std::string& text = **p;
        if (!text.empty() && text.size() < 10 &&
            std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
            s.pid = static_cast<pid_t>(std::stol(text));
    }
    for (DeviceKind kind : {DeviceKind::kVbd, DeviceKind::kVif}) {
        auto devids = client.directory(home + "/device/" + to_string(kind));
        if (!devids)
            continue;
        for (const std::string& d : devids.value()) {
            auto devid = store::parse_domid(d, 0xffff); // devids are 16-bit decimals too
            if (!devid)
                continue;
            DeviceStatus st;
            st.ref.kind = kind;
            st.ref.devid = *devid;
            const std::string front = frontend_path(domid, kind, *devid);
            auto backend_id = read_optional(client, front + "/backend-id");
            if (backend_id && backend_id->has_value())
                st.ref.backend_domid = parse_domid(**backend_id).value_or(PVKIT_DOMID_HOST);
            st.frontend_state = read_state(client, front + "/state");
            const std::string back = backend_path(st.ref.backend_domid, domid, kind, *devid);
            st.backend_state = read_state(client, back + "/state");
            auto detail = read_optional(client, back + (kind == DeviceKind::kVbd ? "/params" : "/mac"));
            if (detail && detail->has_value())
                st.detail = **detail;
            s.devices.push_back(std::move(st));
        }
    }
    return s;
}

StoreResult<std::vector<DomainSummary>> list_domains(StoreClient& client) {
    auto ids = domids_in_store(client, 0);
    if (!ids)
        return Unexpected{ids.error()};
    std::sort(ids->begin(), ids->end());
    std::vector<DomainSummary> out;
    for (pvkit_domid_t id : ids.value()) {
        if (id == PVKIT_DOMID_HOST)
            continue;
        auto s = describe_domain(client, id);
        if (s)
            out.push_back(std::move(s.value()));
        else if (s.error() != StoreError::kNoEnt) // removed while we looked
            return Unexpected{s.error()};
    }
    return out;
}

StoreResult<pvkit_domid_t> find_domain(StoreClient& client, std::string_view name_or_domid) {
    if (auto id = parse_domid(name_or_domid)) {
        auto exists = read_optional(client, domain_path(*id) + "/name");
        if (!exists)
            return Unexpected{exists.error()};
        if (!exists->has_value())
            return Unexpected{StoreError::kNoEnt};
        return *id;
    }
    auto all = list_domains(client);
    if (!all)
        return Unexpected{all.error()};
    for (const DomainSummary& d : all.value())
        if (d.name == name_or_domid)
            return d.domid;
    return Unexpected{StoreError::kNoEnt};
}

StoreResult<void> attach_device(StoreClient& client, pvkit_domid_t domid, const DeviceRef& device,
                                std::span<const StoreOp> ops) {
    const std::string front = frontend_path(domid, device.kind, device.devid);
    const std::string back = backend_path(device.backend_domid, domid, device.kind, device.devid);
    return in_transaction(client, [&](TxId tx) -> StoreResult<void> {
        // Checked in the transaction that writes, so a racing attach or
        // destroy makes the commit conflict instead of slipping in between.
        auto name = read_optional(client, domain_path(domid) + "/name", tx);
        if (!name)
            return fail(name.error());
        if (!name->has_value())
            return fail(StoreError::kNoEnt);
        for (const std::string& dir : {front, back}) {
            auto there = read_optional(client, dir, tx);
            if (!there)
                return fail(there.error());
            if (there->has_value())
                return fail(StoreError::kExist);
        }
        return apply_ops(client, ops, tx);
    });
}

StoreResult<bool> detach_device(StoreClient& client, pvkit_domid_t domid, const DeviceRef& device,
                                std::chrono::milliseconds timeout) {
    auto close = device_close_ops(domid, device);
    if (!close)
        return Unexpected{StoreError::kInval};
    const std::string state_path =
        backend_path(device.backend_domid, domid, device.kind, device.devid) + "/state";
    const std::string token = "pvkit-detach-" + std::to_string(domid) + "-" +
                              std::to_string(device.devid);
    if (auto w = client.watch(state_path, token); !w)
        return Unexpected{w.error()};
    auto closing =
        in_transaction(client, [&](TxId tx) { return apply_ops(client, close.value(), tx); });
    if (!closing) {
        (void)client.unwatch(state_path, token);
        return Unexpected{closing.error()};
    }
    // Wait for the backend to say Closed. Events for other watches of this
    // client are not ours; the state is re-read on every event.
    bool closed = false;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed) {
        if (read_state(client, state_path) == XenbusState::kClosed) {
            closed = true;
            break;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            break;
        auto ev = client.wait_for_event(left);
        if (!ev && ev.error() != StoreError::kTimedOut) {
            (void)client.unwatch(state_path, token);
            return Unexpected{ev.error()};
        }
    }
    (void)client.unwatch(state_path, token);
    auto paths = device_remove_paths(domid, device);
    auto r = in_transaction(client, [&](TxId tx) { return remove_paths(client, paths, tx); });
    if (!r)
        return Unexpected{r.error()};
    return closed;
}

StoreResult<bool> destroy_domain(StoreClient& client, pvkit_domid_t domid,
                                 std::chrono::milliseconds timeout) {
    auto d = describe_domain(client, domid);
    if (!d)
        return Unexpected{d.error()};
    bool all_closed = true;
    std::vector<DeviceRef> refs;
    for (const DeviceStatus& dev : d->devices) {
        refs.push_back(dev.ref);
        auto r = detach_device(client, domid, dev.ref, timeout);
        if (!r)
            return Unexpected{r.error()};
        all_closed = all_closed && r.value();
    }
    auto paths = domain_destroy_paths(domid, d->name, refs);
    auto r = in_transaction(client, [&](TxId tx) { return remove_paths(client, paths, tx); });
    if (!r)
        return Unexpected{r.error()};
    return all_closed;
}

} // namespace pvkit::toolstack

#include "pvkit/store/store.hpp"

#include <algorithm>
#include <cassert>
#include <map>
#include <set>
#include <unordered_map>

#include "pvkit/store/path.hpp"

namespace pvkit::store {

namespace {

struct Node {
    std::string value;
    Perms perms; // never empty: entry 0 is the owner
    std::set<std::string, std::less<>> children;
    // Tree-wide counter value of the node's last change (value, perms or
    // list of children). Transactions compare generations to find conflicts.
    std::uint64_t gen = 0;
};

using NodeMap = std::map<std::string, Node, std::less<>>;

pvkit_domid_t owner_of(const Node& node) { return node.perms.front().domid; }

// XenStore's rule: domain 0 may do everything, the owner may do everything,
// a domain named in a later entry gets that entry's access, everyone else
// gets the first entry's access.
Access access_for(pvkit_domid_t domid, const Perms& perms) {
    if (domid == PVKIT_DOMID_HOST || perms.front().domid == domid)
        return Access::kBoth;
    for (std::size_t i = 1; i < perms.size(); ++i) {
        if (perms[i].domid == domid)
            return perms[i].access;
    }
    return perms.front().access;
}

bool may(pvkit_domid_t domid, const Perms& perms, Access wanted) {
    return allows(access_for(domid, perms), wanted);
}

bool is_valid_stored_path(std::string_view path) {
    return !path.empty() && path[0] == '/' && canonical_node_path(path, 0).has_value();
}

// The committed tree.
class Tree {
public:
    Tree() {
        Node root;
        root.perms = {Perm{Access::kNone, PVKIT_DOMID_HOST}};
        m_nodes.emplace("/", std::move(root));
        m_owned[PVKIT_DOMID_HOST] = 1;
    }

    [[nodiscard]] const Node* find(std::string_view path) const {
        auto it = m_nodes.find(path);
        return it == m_nodes.end() ? nullptr : &it->second;
    }
    [[nodiscard]] std::uint64_t generation() const { return m_gen; }
    [[nodiscard]] const NodeMap& nodes() const { return m_nodes; }
    [[nodiscard]] std::size_t owned(pvkit_domid_t domid) const {
        auto it = m_owned.find(domid);
        return it == m_owned.end() ? 0 : it->second;
    }

    bool apply(const ChangeSet& changes) {
        for (const Change& c : changes) {
            if (!is_valid_stored_path(c.path))
                return false;
            bool ok = c.kind == Change::Kind::kPut ? put(c) : del(c.path);
            if (!ok)
                return false;
        }
        return true;
    }

private:
    bool put(const Change& c) {
        if (c.perms.empty())
            return false;
        auto it = m_nodes.find(c.path);
        if (it != m_nodes.end()) {
            Node& n = it->second;
            add_owned(owner_of(n), -1);
            n.value = c.value;
            n.perms = c.perms;
            n.gen = ++m_gen;
            add_owned(owner_of(n), +1);
            return true;
        }
        auto parent = m_nodes.find(parent_path(c.path));
        if (parent == m_nodes.end())
            return false;
        parent->second.children.emplace(base_name(c.path));
        parent->second.gen = ++m_gen;
        Node n;
        n.value = c.value;
        n.perms = c.perms;
        n.gen = ++m_gen;
        add_owned(owner_of(n), +1);
        m_nodes.emplace(c.path, std::move(n));
        return true;
    }

    bool del(const std::string& path) {
        if (path == "/")
            return false;
        if (m_nodes.find(path) == m_nodes.end())
            return true; // already gone: a del is idempotent
        std::vector<std::string> stack{path};
        while (!stack.empty()) {
            std::string p = std::move(stack.back());
            stack.pop_back();
            auto it = m_nodes.find(p);
            if (it == m_nodes.end())
                continue;
            for (const std::string& child : it->second.children)
                stack.push_back(child_path(p, child));
            add_owned(owner_of(it->second), -1);
            m_nodes.erase(it);
        }
        auto parent = m_nodes.find(parent_path(path));
        if (parent != m_nodes.end()) {
            parent->second.children.erase(std::string(base_name(path)));
            parent->second.gen = ++m_gen;
        }
        return true;
    }

    void add_owned(pvkit_domid_t domid, long delta) {
        std::size_t& n = m_owned[domid];
        n = delta < 0 ? n - 1 : n + 1;
        if (n == 0)
            m_owned.erase(domid);
    }

    NodeMap m_nodes;
    std::unordered_map<pvkit_domid_t, std::size_t> m_owned;
    std::uint64_t m_gen = 0;
};

// A watch event a change will cause once it is committed.
struct PendingEvent {
    std::string path;
    Perms perms;               // who may see it: readers of the node
    bool removed_subtree = false; // watches below `path` fire too
};

// A private view of the tree: changes go to an overlay, reads fall through
// to the committed tree. Every request works on a View (a short-lived one
// outside transactions), so the same code serves both, and a request that
// fails leaves nothing behind.
//
// Committed nodes are copied into the overlay only when their own value or
// permissions change. A new or removed child is noted as a change to its
// parent's list of children instead, so adding the ten-thousandth node to a
// directory costs as much as adding the first.
//
// For transactions the view also records the generation of every committed
// node it looked at (or that the node was absent). The commit succeeds only
// if all of them are unchanged, and a node that already changed after the
// transaction started marks the view as conflicted the moment it is first
// looked at, so a transaction never commits after seeing a mix of old and
// new state.
class View {
public:
    explicit View(const Tree& tree) : m_tree(&tree), m_start_gen(tree.generation()) {}

    // The node at `path` as this view sees it. Its `children` are not
    // meaningful here; use children_of().
    const Node* find(std::string_view path) {
        if (auto it = m_overlay.find(path); it != m_overlay.end())
            return it->second ? &it->second->node : nullptr;
        const Node* base = m_tree->find(path);
        auto [it, inserted] = m_accessed.try_emplace(std::string(path));
        if (inserted && base != nullptr) {
            it->second = base->gen;
            if (base->gen > m_start_gen)
                m_conflict = true;
        }
        return base;
    }

    // Names of the children of an existing node, in order.
    std::vector<std::string> children_of(std::string_view path) {
        if (auto it = m_overlay.find(path); it != m_overlay.end()) {
            if (!it->second)
                return {};
            if (it->second->fresh)
                return {it->second->node.children.begin(), it->second->node.children.end()};
        }
        const Node* base = m_tree->find(path);
        if (base == nullptr)
            return {};
        auto delta = m_child_delta.find(path);
        if (delta == m_child_delta.end())
            return {base->children.begin(), base->children.end()};
        std::set<std::string, std::less<>> names = base->children;
        for (const std::string& gone : delta->second.removed)
            names.erase(gone);
        names.insert(delta->second.added.begin(), delta->second.added.end());
        return {names.begin(), names.end()};
    }

    // The nearest existing proper ancestor of `path`; the root always exists.
    const Node* nearest_ancestor(std::string_view path) {
        std::string_view p = path;
        for (;;) {
            p = parent_path(p);
            if (const Node* n = find(p))
                return n;
            assert(p != "/");
        }
    }

    // A node that exists, copied into the overlay (without its children) so
    // that its value and permissions can be changed.
    Node& writable(std::string_view path) {
        auto it = m_overlay.find(path);
        if (it == m_overlay.end()) {
            const Node* base = find(path);
            assert(base != nullptr);
            Node copy;
            copy.value = base->value;
            copy.perms = base->perms;
            copy.gen = base->gen;
            it = m_overlay.emplace(std::string(path), OverlayNode{std::move(copy), false}).first;
        }
        assert(it->second.has_value());
        return it->second->node;
    }

    // Creates `path` (absent, with an existing parent).
    void create(const std::string& path, Node node) {
        link(parent_path(path), base_name(path), true);
        add_owned(owner_of(node), +1);
        node.children.clear();
        m_overlay.insert_or_assign(path, std::optional<OverlayNode>(OverlayNode{std::move(node), true}));
    }

    // Removes an existing node other than the root, and its subtree.
    void remove(std::string_view path) {
        std::vector<std::string> stack{std::string(path)};
        while (!stack.empty()) {
            std::string p = std::move(stack.back());
            stack.pop_back();
            const Node* n = find(p);
            if (n == nullptr)
                continue;
            add_owned(owner_of(*n), -1);
            for (const std::string& child : children_of(p))
                stack.push_back(child_path(p, child));
            m_overlay.insert_or_assign(p, std::optional<OverlayNode>());
        }
        link(parent_path(path), base_name(path), false);
    }

    void set_owner_change(pvkit_domid_t from, pvkit_domid_t to) {
        add_owned(from, -1);
        add_owned(to, +1);
    }

    void add_event(std::string path, Perms perms, bool removed_subtree) {
        m_events.push_back(PendingEvent{std::move(path), std::move(perms), removed_subtree});
    }

    [[nodiscard]] bool changed() const { return !m_overlay.empty(); }
    [[nodiscard]] long owned_delta(pvkit_domid_t domid) const {
        auto it = m_owned_delta.find(domid);
        return it == m_owned_delta.end() ? 0 : it->second;
    }
    [[nodiscard]] const std::vector<PendingEvent>& events() const { return m_events; }

    // Whether anything this view looked at changed in `now` since.
    [[nodiscard]] bool conflicts_with(const Tree& now) const {
        if (m_conflict)
            return true;
        for (const auto& [path, gen] : m_accessed) {
            const Node* n = now.find(path);
            if (gen.has_value() ? (n == nullptr || n->gen != *gen) : (n != nullptr))
                return true;
        }
        return false;
    }

    // The overlay as changes against `now`. Path order puts every parent
    // before its children. A put of a new node links it into its parent, a
    // del unlinks it, so parents' lists of children need no changes of
    // their own; a del below a node that is itself deleted adds nothing,
    // because deleting the parent removes it.
    [[nodiscard]] ChangeSet changes(const Tree& now) const {
        ChangeSet out;
        for (const auto& [path, entry] : m_overlay) {
            if (entry) {
                out.push_back(Change{Change::Kind::kPut, path, entry->node.value, entry->node.perms});
                continue;
            }
            if (now.find(path) == nullptr)
                continue;
            auto parent = m_overlay.find(parent_path(path));
            if (parent != m_overlay.end() && !parent->second)
                continue;
            out.push_back(Change{Change::Kind::kDel, path, {}, {}});
        }
        return out;
    }

private:
    struct OverlayNode {
        Node node;
        bool fresh; // created in this view: node.children is the whole list
    };
    struct ChildDelta {
        std::set<std::string, std::less<>> added;
        std::set<std::string, std::less<>> removed;
    };

    // Adds (or removes) `name` to the children of `parent`.
    void link(std::string_view parent, std::string_view name, bool add) {
        auto it = m_overlay.find(parent);
        if (it != m_overlay.end() && it->second && it->second->fresh) {
            if (add)
                it->second->node.children.emplace(name);
            else
                it->second->node.children.erase(std::string(name));
            return;
        }
        auto d = m_child_delta.find(parent);
        if (d == m_child_delta.end())
            d = m_child_delta.emplace(std::string(parent), ChildDelta{}).first;
        std::string n(name);
        if (add) {
            d->second.removed.erase(n);
            d->second.added.insert(std::move(n));
        } else {
            d->second.added.erase(n);
            d->second.removed.insert(std::move(n));
        }
    }

    void add_owned(pvkit_domid_t domid, long delta) { m_owned_delta[domid] += delta; }

    const Tree* m_tree;
    std::uint64_t m_start_gen;
    bool m_conflict = false;
    std::map<std::string, std::optional<OverlayNode>, std::less<>> m_overlay;
    std::map<std::string, ChildDelta, std::less<>> m_child_delta;
    std::map<std::string, std::optional<std::uint64_t>, std::less<>> m_accessed;
    std::map<pvkit_domid_t, long> m_owned_delta;
    std::vector<PendingEvent> m_events;
};

struct Watch {
    std::string given;  // as the client sent it (events use the same form)
    std::string abs;    // canonical, or an "@name"
    std::string token;
    std::string prefix; // domain path stripped from events of a relative watch, else empty
};

struct Transaction {
    explicit Transaction(const Tree& tree) : view(tree) {}
    View view;
};

struct Connection {
    pvkit_domid_t domid = PVKIT_DOMID_HOST;
    std::vector<Watch> watches; // in the order they were set
    std::map<std::uint32_t, std::unique_ptr<Transaction>> transactions;
};

const std::string kOk("OK\0", 3);

std::optional<std::string_view> one_arg(std::string_view payload) {
    auto args = split_args(payload);
    if (!args || args->size() != 1)
        return std::nullopt;
    return args->front();
}

} // namespace

struct Store::Impl {
    StoreLimits limits;
    Journal* journal = nullptr;
    Tree tree;
    std::map<ConnId, Connection> conns;
    ConnId next_conn = 1;
    std::uint32_t next_tx = 1;

    std::size_t domain_watches(pvkit_domid_t domid) const {
        std::size_t n = 0;
        for (const auto& [id, c] : conns) {
            if (c.domid == domid)
                n += c.watches.size();
        }
        return n;
    }

    std::size_t domain_transactions(pvkit_domid_t domid) const {
        std::size_t n = 0;
        for (const auto& [id, c] : conns) {
            if (c.domid == domid)
                n += c.transactions.size();
        }
        return n;
    }

    // ---- node operations, on a view ----------------------------------

    // The node at `path` if `domid` may access it as wanted. For a node
    // that does not exist the answer is ENOENT only to a domain that may
    // read the nearest existing ancestor: others learn nothing (EACCES).
    StoreResult<const Node*> lookup(View& v, pvkit_domid_t domid, std::string_view path,
                                    Access wanted) {
        if (const Node* n = v.find(path)) {
            if (!may(domid, n->perms, wanted))
                return Unexpected{StoreError::kAccess};
            return n;
        }
        const Node* ancestor = v.nearest_ancestor(path);
        return Unexpected{may(domid, ancestor->perms, Access::kRead) ? StoreError::kNoEnt
                                                                     : StoreError::kAccess};
    }

    // Creates `path` and any missing ancestors. New nodes inherit the
    // nearest existing ancestor's permissions; an unprivileged creator
    // becomes their owner (XenStore's rule: what the toolstack creates
    // under a guest's directory stays the guest's).
    StoreResult<void> create_path(View& v, pvkit_domid_t domid, const std::string& path,
                                  std::string_view value) {
        std::vector<std::string> missing{path};
        std::string_view p = path;
        const Node* ancestor = nullptr;
        for (;;) {
            p = parent_path(p);
            ancestor = v.find(p);
            if (ancestor != nullptr)
                break;
            missing.emplace_back(p);
        }
        if (!may(domid, ancestor->perms, Access::kWrite))
            return Unexpected{StoreError::kAccess};
        if (domid != PVKIT_DOMID_HOST) {
            long owned = static_cast<long>(tree.owned(domid)) + v.owned_delta(domid);
            if (owned + static_cast<long>(missing.size()) > static_cast<long>(limits.quota_nodes))
                return Unexpected{StoreError::kQuota};
        }
        Perms perms = ancestor->perms;
        if (domid != PVKIT_DOMID_HOST)
            perms.front().domid = domid;
        for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
            Node n;
            n.perms = perms;
            if (*it == path)
                n.value = std::string(value);
            v.create(*it, std::move(n));
        }
        v.add_event(path, perms, false);
        return {};
    }

    StoreResult<std::string> node_op(View& v, pvkit_domid_t domid, const Message& req) {
        auto canonical = [domid](std::string_view p) -> StoreResult<std::string> {
            std::optional<std::string> abs = canonical_node_path(p, domid);
            if (!abs)
                return Unexpected{StoreError::kInval};
            return std::move(*abs);
        };

        if (req.type == PVKIT_STORE_WRITE) {
            std::optional<PathAndValue> pv = split_write(req.payload);
            if (!pv)
                return Unexpected{StoreError::kInval};
            StoreResult<std::string> abs = canonical(pv->path);
            if (!abs)
                return Unexpected{abs.error()};
            if (pv->value.size() > limits.max_value_bytes)
                return Unexpected{StoreError::kTooBig};
            if (const Node* n = v.find(*abs)) {
                if (!may(domid, n->perms, Access::kWrite))
                    return Unexpected{StoreError::kAccess};
                Node& w = v.writable(*abs);
                w.value = std::string(pv->value);
                v.add_event(*abs, w.perms, false);
                return kOk;
            }
            StoreResult<void> created = create_path(v, domid, *abs, pv->value);
            if (!created)
                return Unexpected{created.error()};
            return kOk;
        }

        if (req.type == PVKIT_STORE_SET_PERMS) {
            auto args = split_args(req.payload);
            if (!args || args->size() < 2)
                return Unexpected{StoreError::kInval};
            StoreResult<std::string> abs = canonical(args->front());
            if (!abs)
                return Unexpected{abs.error()};
            std::optional<Perms> perms =
                parse_perms(std::span<const std::string_view>(*args).subspan(1));
            if (!perms)
                return Unexpected{StoreError::kInval};
            StoreResult<const Node*> n = lookup(v, domid, *abs, Access::kWrite);
            if (!n)
                return Unexpected{n.error()};
            pvkit_domid_t owner = owner_of(**n);
            if (domid != PVKIT_DOMID_HOST && owner != domid)
                return Unexpected{StoreError::kAccess};
            // Only domain 0 may give a node away (it would dodge the quota).
            if (domid != PVKIT_DOMID_HOST && perms->front().domid != owner)
                return Unexpected{StoreError::kPerm};
            Node& w = v.writable(*abs);
            w.perms = std::move(*perms);
            if (owner_of(w) != owner)
                v.set_owner_change(owner, owner_of(w));
            v.add_event(*abs, w.perms, false);
            return kOk;
        }

        std::optional<std::string_view> arg = one_arg(req.payload);
        if (!arg)
            return Unexpected{StoreError::kInval};
        StoreResult<std::string> abs = canonical(*arg);
        if (!abs)
            return Unexpected{abs.error()};

        switch (req.type) {
        case PVKIT_STORE_READ: {
            StoreResult<const Node*> n = lookup(v, domid, *abs, Access::kRead);
            if (!n)
                return Unexpected{n.error()};
            return (*n)->value;
        }
        case PVKIT_STORE_GET_PERMS: {
            StoreResult<const Node*> n = lookup(v, domid, *abs, Access::kRead);
            if (!n)
                return Unexpected{n.error()};
            std::string out;
            for (const Perm& p : (*n)->perms) {
                out += format_perm(p);
                out.push_back('\0');
            }
            if (out.size() > kPayloadMax)
                return Unexpected{StoreError::kTooBig};
            return out;
        }
        case PVKIT_STORE_DIRECTORY: {
            StoreResult<const Node*> n = lookup(v, domid, *abs, Access::kRead);
            if (!n)
                return Unexpected{n.error()};
            // Children this domain may not read are left out: a domain sees
            // only what it may read.
            std::vector<std::string> names = v.children_of(*abs);
            std::string out;
            for (const std::string& name : names) {
                if (domid != PVKIT_DOMID_HOST) {
                    const Node* child = v.find(child_path(*abs, name));
                    if (child == nullptr || !may(domid, child->perms, Access::kRead))
                        continue;
                }
                out += name;
                out.push_back('\0');
            }
            if (out.size() > kPayloadMax)
                return Unexpected{StoreError::kTooBig};
            return out;
        }
        case PVKIT_STORE_MKDIR: {
            if (const Node* n = v.find(*abs)) {
                if (!may(domid, n->perms, Access::kWrite))
                    return Unexpected{StoreError::kAccess};
                return kOk; // already there: fine, and nothing changes
            }
            StoreResult<void> created = create_path(v, domid, *abs, "");
            if (!created)
                return Unexpected{created.error()};
            return kOk;
        }
        case PVKIT_STORE_RM: {
            if (*abs == "/")
                return Unexpected{StoreError::kInval};
            StoreResult<const Node*> n = lookup(v, domid, *abs, Access::kWrite);
            if (!n) {
                // Removing what is not there succeeds if its parent exists
                // (XenStore does the same), so rm is idempotent.
                if (n.error() == StoreError::kNoEnt && v.find(parent_path(*abs)) != nullptr)
                    return kOk;
                return Unexpected{n.error()};
            }
            Perms perms = (*n)->perms;
            v.remove(*abs);
            v.add_event(*abs, std::move(perms), true);
            return kOk;
        }
        default:
            return Unexpected{StoreError::kNoSys};
        }
    }

    // Applies a view's changes to the tree: journal first, then memory,
    // then watch events. Nothing is applied if the journal fails.
    StoreResult<void> commit(View& v, std::vector<Outgoing>& out) {
        ChangeSet cs = v.changes(tree);
        if (cs.empty())
            return {};
        if (journal != nullptr && !journal->append(cs))
            return Unexpected{StoreError::kIo};
        bool applied = tree.apply(cs);
        // Views only produce changes that apply; a failure here is a bug.
        assert(applied);
        if (!applied)
            return Unexpected{StoreError::kIo};
        fire(v.events(), out);
        return {};
    }

    void fire(const std::vector<PendingEvent>& events, std::vector<Outgoing>& out) {
        for (const PendingEvent& e : events) {
            for (const auto& [id, c] : conns) {
                for (const Watch& w : c.watches) {
                    if (w.abs[0] == '@')
                        continue;
                    std::string_view path;
                    if (is_at_or_below(e.path, w.abs))
                        path = e.path;
                    else if (e.removed_subtree && is_at_or_below(w.abs, e.path))
                        path = w.abs;
                    else
                        continue;
                    if (!may(c.domid, e.perms, Access::kRead))
                        continue;
                    std::string_view shown = path;
                    if (!w.prefix.empty() && is_at_or_below(path, w.prefix) && path.size() > w.prefix.size())
                        shown = path.substr(w.prefix.size() + 1);
                    out.push_back(Outgoing{id, make_watch_event(shown, w.token), false});
                }
            }
        }
    }

    void reply(ConnId conn, Message msg, std::vector<Outgoing>& out) {
        out.push_back(Outgoing{conn, std::move(msg), true});
    }

    void handle_node_request(ConnId id, Connection& c, const Message& req,
                             std::vector<Outgoing>& out) {
        bool mutating = req.type == PVKIT_STORE_WRITE || req.type == PVKIT_STORE_MKDIR ||
                        req.type == PVKIT_STORE_RM || req.type == PVKIT_STORE_SET_PERMS;
        if (req.tx_id != 0) {
            auto it = c.transactions.find(req.tx_id);
            if (it == c.transactions.end())
                return reply(id, make_error(req, StoreError::kNoEnt), out);
            StoreResult<std::string> r = node_op(it->second->view, c.domid, req);
            if (!r)
                return reply(id, make_error(req, r.error()), out);
            return reply(id, make_reply(req, std::move(r).value()), out);
        }
        View v(tree);
        StoreResult<std::string> r = node_op(v, c.domid, req);
        if (!r)
            return reply(id, make_error(req, r.error()), out);
        if (mutating && v.changed()) {
            StoreResult<void> done = commit(v, out);
            if (!done)
                return reply(id, make_error(req, done.error()), out);
        }
        reply(id, make_reply(req, std::move(r).value()), out);
    }

    void handle_watch(ConnId id, Connection& c, const Message& req, std::vector<Outgoing>& out) {
        auto args = split_args(req.payload);
        if (!args || args->size() != 2)
            return reply(id, make_error(req, StoreError::kInval), out);
        std::string_view given = (*args)[0];
        std::string_view token = (*args)[1];
        std::optional<std::string> abs = canonical_watch_path(given, c.domid);
        if (!abs)
            return reply(id, make_error(req, StoreError::kInval), out);
        auto same = [&](const Watch& w) { return w.abs == *abs && w.token == token; };
        auto it = std::find_if(c.watches.begin(), c.watches.end(), same);

        if (req.type == PVKIT_STORE_UNWATCH) {
            if (it == c.watches.end())
                return reply(id, make_error(req, StoreError::kNoEnt), out);
            c.watches.erase(it);
            return reply(id, make_ok(req), out);
        }
        if (it != c.watches.end())
            return reply(id, make_error(req, StoreError::kExist), out);
        if (c.domid != PVKIT_DOMID_HOST && domain_watches(c.domid) >= limits.quota_watches)
            return reply(id, make_error(req, StoreError::kQuota), out);
        Watch w;
        w.given = std::string(given);
        w.abs = std::move(*abs);
        w.token = std::string(token);
        if (given[0] != '/' && given[0] != '@')
            w.prefix = domain_path(c.domid);
        c.watches.push_back(w);
        reply(id, make_ok(req), out);
        // Fired once when set, so a client reads the current state after
        // the first event and never misses a change in between.
        out.push_back(Outgoing{id, make_watch_event(w.given, w.token), false});
    }

    void handle_transaction(ConnId id, Connection& c, const Message& req,
                            std::vector<Outgoing>& out) {
        if (req.type == PVKIT_STORE_TRANSACTION_START) {
            if (req.tx_id != 0)
                return reply(id, make_error(req, StoreError::kBusy), out);
            if (!req.payload.empty() && req.payload != std::string_view("\0", 1))
                return reply(id, make_error(req, StoreError::kInval), out);
            if (c.domid != PVKIT_DOMID_HOST && domain_transactions(c.domid) >= limits.quota_transactions)
                return reply(id, make_error(req, StoreError::kQuota), out);
            std::uint32_t tx = next_tx++;
            while (tx == 0 || c.transactions.count(tx) != 0)
                tx = next_tx++;
            c.transactions.emplace(tx, std::make_unique<Transaction>(tree));
            return reply(id, make_reply(req, std::to_string(tx) + std::string(1, '\0')), out);
        }
        std::optional<std::string_view> arg = one_arg(req.payload);
        if (!arg || (*arg != "T" && *arg != "F"))
            return reply(id, make_error(req, StoreError::kInval), out);
        auto it = c.transactions.find(req.tx_id);
        if (req.tx_id == 0 || it == c.transactions.end())
            return reply(id, make_error(req, StoreError::kNoEnt), out);
        // The transaction ends here whatever the outcome.
        std::unique_ptr<Transaction> tx = std::move(it->second);
        c.transactions.erase(it);
        if (*arg == "F")
            return reply(id, make_ok(req), out);
        if (tx->view.conflicts_with(tree))
            return reply(id, make_error(req, StoreError::kAgain), out);
        // Nodes created elsewhere since the transaction counted its quota.
        long delta = tx->view.owned_delta(c.domid);
        if (c.domid != PVKIT_DOMID_HOST && delta > 0 &&
            static_cast<long>(tree.owned(c.domid)) + delta > static_cast<long>(limits.quota_nodes))
            return reply(id, make_error(req, StoreError::kQuota), out);
        StoreResult<void> done = commit(tx->view, out);
        if (!done)
            return reply(id, make_error(req, done.error()), out);
        reply(id, make_ok(req), out);
    }

    void handle_control(ConnId id, const Message& req, std::vector<Outgoing>& out) {
        auto args = split_args(req.payload);
        if (!args || args->size() != 2 || (*args)[0] != "restrict")
            return reply(id, make_error(req, StoreError::kInval), out);
        std::optional<pvkit_domid_t> domid = parse_domid((*args)[1]);
        if (!domid || *domid == PVKIT_DOMID_HOST)
            return reply(id, make_error(req, StoreError::kInval), out);
        StoreResult<void> r = restrict_conn(id, *domid);
        if (!r)
            return reply(id, make_error(req, r.error()), out);
        reply(id, make_ok(req), out);
    }

    StoreResult<void> restrict_conn(ConnId id, pvkit_domid_t domid) {
        auto it = conns.find(id);
        if (it == conns.end())
            return Unexpected{StoreError::kNoEnt};
        Connection& c = it->second;
        if (domid == PVKIT_DOMID_HOST || domid > PVKIT_DOMID_MAX)
            return Unexpected{StoreError::kInval};
        if (c.domid != PVKIT_DOMID_HOST)
            return Unexpected{StoreError::kPerm};
        // Watches and transactions made with domain 0's rights would keep
        // them; restricting is the first thing a connection does.
        if (!c.watches.empty() || !c.transactions.empty())
            return Unexpected{StoreError::kBusy};
        c.domid = domid;
        return {};
    }
};

Store::Store(StoreLimits limits) : m_impl(std::make_unique<Impl>()) { m_impl->limits = limits; }
Store::~Store() = default;

void Store::set_journal(Journal* journal) { m_impl->journal = journal; }

ConnId Store::connect() {
    ConnId id = m_impl->next_conn++;
    m_impl->conns.emplace(id, Connection{});
    return id;
}

void Store::disconnect(ConnId conn) { m_impl->conns.erase(conn); }

StoreResult<void> Store::restrict(ConnId conn, pvkit_domid_t domid) {
    return m_impl->restrict_conn(conn, domid);
}

void Store::handle(ConnId conn, const Message& request, std::vector<Outgoing>& out) {
    auto it = m_impl->conns.find(conn);
    if (it == m_impl->conns.end())
        return;
    Connection& c = it->second;
    switch (request.type) {
    case PVKIT_STORE_READ:
    case PVKIT_STORE_DIRECTORY:
    case PVKIT_STORE_GET_PERMS:
    case PVKIT_STORE_WRITE:
    case PVKIT_STORE_MKDIR:
    case PVKIT_STORE_RM:
    case PVKIT_STORE_SET_PERMS:
        return m_impl->handle_node_request(conn, c, request, out);
    case PVKIT_STORE_WATCH:
    case PVKIT_STORE_UNWATCH:
        return m_impl->handle_watch(conn, c, request, out);
    case PVKIT_STORE_TRANSACTION_START:
    case PVKIT_STORE_TRANSACTION_END:
        return m_impl->handle_transaction(conn, c, request, out);
    case PVKIT_STORE_GET_DOMAIN_PATH: {
        std::optional<std::string_view> arg = one_arg(request.payload);
        std::optional<pvkit_domid_t> domid = arg ? parse_domid(*arg) : std::nullopt;
        if (!domid)
            return m_impl->reply(conn, make_error(request, StoreError::kInval), out);
        return m_impl->reply(conn, make_reply(request, domain_path(*domid) + std::string(1, '\0')),
                             out);
    }
    case PVKIT_STORE_CONTROL:
        return m_impl->handle_control(conn, request, out);
    case PVKIT_STORE_RESET_WATCHES:
        c.watches.clear();
        return m_impl->reply(conn, make_ok(request), out);
    case PVKIT_STORE_WATCH_EVENT:
    case PVKIT_STORE_ERROR:
        // Daemon-to-client messages have no meaning as requests.
        return m_impl->reply(conn, make_error(request, StoreError::kInval), out);
    default:
        // Unknown numbers, the reserved 20, and domain-management requests
        // that belong to a hypervisor-integrated store.
        return m_impl->reply(conn, make_error(request, StoreError::kNoSys), out);
    }
}

pvkit_domid_t Store::domid_of(ConnId conn) const {
    auto it = m_impl->conns.find(conn);
    return it == m_impl->conns.end() ? PVKIT_DOMID_INVALID : it->second.domid;
}

bool Store::is_privileged(ConnId conn) const { return domid_of(conn) == PVKIT_DOMID_HOST; }

const StoreLimits& Store::limits() const { return m_impl->limits; }

bool Store::apply(const ChangeSet& changes) { return m_impl->tree.apply(changes); }

void Store::for_each_node(
    const std::function<void(const std::string& path, const NodeData&)>& fn) const {
    for (const auto& [path, node] : m_impl->tree.nodes())
        fn(path, NodeData{node.value, node.perms});
}

std::optional<NodeData> Store::get_node(std::string_view abs_path) const {
    const Node* n = m_impl->tree.find(abs_path);
    if (n == nullptr)
        return std::nullopt;
    return NodeData{n->value, n->perms};
}

std::size_t Store::node_count() const { return m_impl->tree.nodes().size(); }

std::size_t Store::nodes_owned(pvkit_domid_t domid) const { return m_impl->tree.owned(domid); }

std::size_t Store::watch_count(ConnId conn) const {
    auto it = m_impl->conns.find(conn);
    return it == m_impl->conns.end() ? 0 : it->second.watches.size();
}

std::size_t Store::transaction_count(ConnId conn) const {
    auto it = m_impl->conns.find(conn);
    return it == m_impl->conns.end() ? 0 : it->second.transactions.size();
}

} // namespace pvkit::store

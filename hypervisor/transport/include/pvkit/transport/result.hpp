// Result types for hot paths: a value or an enum-class error, never an
// exception. Exceptions stay at process edges (CLI, config, start-up).
#pragma once

#include <cassert>
#include <utility>
#include <variant>

namespace pvkit {

// Wraps an error so that Result<T, E> can be built from it unambiguously,
// also when T and E are convertible to each other.
template <class E>
struct Unexpected {
    E error;
};
template <class E>
Unexpected(E) -> Unexpected<E>;

template <class T, class E>
class [[nodiscard]] Result {
public:
    // NOLINTNEXTLINE(google-explicit-constructor): implicit success, like std::expected.
    Result(T value) : m_state(std::in_place_index<0>, std::move(value)) {}
    // NOLINTNEXTLINE(google-explicit-constructor)
    Result(Unexpected<E> err) : m_state(std::in_place_index<1>, err.error) {}

    [[nodiscard]] bool ok() const { return m_state.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & {
        assert(ok());
        return std::get<0>(m_state);
    }
    const T& value() const& {
        assert(ok());
        return std::get<0>(m_state);
    }
    T&& value() && {
        assert(ok());
        return std::get<0>(std::move(m_state));
    }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }

    [[nodiscard]] E error() const {
        assert(!ok());
        return std::get<1>(m_state);
    }

private:
    std::variant<T, E> m_state;
};

template <class E>
class [[nodiscard]] Result<void, E> {
public:
    Result() = default;
    // NOLINTNEXTLINE(google-explicit-constructor)
    Result(Unexpected<E> err) : m_failed(true), m_error(err.error) {}

    [[nodiscard]] bool ok() const { return !m_failed; }
    explicit operator bool() const { return ok(); }
    [[nodiscard]] E error() const {
        assert(m_failed);
        return m_error;
    }

private:
    bool m_failed = false;
    E m_error{};
};

} // namespace pvkit

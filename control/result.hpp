// Error model of the C++ layers: a Result<T> that carries either a value or
// one operator-readable message. No exceptions cross a module boundary.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace lg {

struct Error {
	std::string message;
};

template <typename T>
class Result {
public:
	Result(T value) : v_(std::move(value)) {}
	Result(Error e) : v_(std::move(e)) {}

	bool ok() const { return v_.index() == 0; }
	explicit operator bool() const { return ok(); }
	T &value() { return std::get<0>(v_); }
	const T &value() const { return std::get<0>(v_); }
	T &operator*() { return value(); }
	const T &operator*() const { return value(); }
	T *operator->() { return &value(); }
	const T *operator->() const { return &value(); }
	const std::string &error() const { return std::get<1>(v_).message; }

private:
	std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;

inline Error err(std::string m) { return Error{std::move(m)}; }

} // namespace lg

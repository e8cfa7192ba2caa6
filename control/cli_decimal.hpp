// Whole-number options of linkgated and linkgate-dpdk are decimal, as
// linkgatectl's are: "0100" is 100; "0x10", "-1", "+1" and "1e3" are usage
// errors. CLI11 2.1 converts with strtoull(..., 0), which reads a leading 0
// as octal and 0x as hex, and wraps a minus sign around ("-18446744073709551615"
// was 1), so this transform runs first and hands it the number rewritten.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace lg {

inline const CLI::Validator kDecimal(
	[](std::string &s) -> std::string {
		if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
			return "not a decimal number: " + s;
		size_t digit = s.find_first_not_of('0');
		s = digit == std::string::npos ? "0" : s.substr(digit);
		if (s.size() > 19) // past any range checked after it, and past what strtoull reads
			return "out of range: " + s;
		return "";
	},
	""); // no name: CLI11 shows the option's own type

} // namespace lg

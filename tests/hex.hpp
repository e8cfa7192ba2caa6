// A frame as hex, 16 bytes a line: for test failure messages.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace lg::testing {

inline std::string hex(const std::vector<uint8_t> &f)
{
	std::string s;
	char b[4];
	for (size_t i = 0; i < f.size(); i++) {
		std::snprintf(b, sizeof b, "%02x", f[i]);
		s += b;
		s += (i % 16 == 15) ? "\n" : " ";
	}
	return s;
}

} // namespace lg::testing

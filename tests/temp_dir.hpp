// A scratch directory for one test, removed with everything in it when the
// test ends, also when it fails (an ASSERT returns early).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace lgtest {

class TempDir {
public:
	explicit TempDir(const std::string &prefix = "lgtest")
	{
		std::string t = "/tmp/" + prefix + ".XXXXXX";
		if (mkdtemp(t.data()))
			path_ = t;
	}
	~TempDir()
	{
		std::error_code ec;
		if (!path_.empty())
			std::filesystem::remove_all(path_, ec);
	}
	TempDir(const TempDir &) = delete;
	TempDir &operator=(const TempDir &) = delete;

	bool made() const { return !path_.empty(); }
	const std::string &path() const { return path_; }

private:
	std::string path_;
};

} // namespace lgtest

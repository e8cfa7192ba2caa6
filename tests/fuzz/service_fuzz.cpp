// libFuzzer target (scripts/fuzz service, run by hand): lines of the control socket
// into an in-process Service on the seed state, whose commit compiles each
// state as linkgated's does before it publishes. Every line must get a
// JSON-RPC answer (or none, for a notification) and nothing may crash,
// leak or overflow (AddressSanitizer, UndefinedBehaviorSanitizer).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "arm_json.hpp"
#include "compiler.hpp"
#include "service.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const lg::State seed = [] {
		auto s = lg::load_state_file(LG_FIXTURES_DIR "/seed_state.json");
		if (!s)
			abort();
		return *s;
	}();
	uint64_t gen = 1;
	lg::agent::Service svc(seed, gen, [&](const lg::State &s) -> lg::Result<uint64_t> {
		auto t = lg::compile(s, {}, gen + 1);
		if (!t)
			return lg::err("compile: " + t.error());
		return ++gen;
	});
	std::string_view in(reinterpret_cast<const char *>(data), size);
	while (!in.empty()) {
		size_t nl = in.find('\n');
		std::string out = svc.handle_line(in.substr(0, nl));
		if (!out.empty()) {
			auto j = nlohmann::json::parse(out, nullptr, false);
			if (j.is_discarded() || !j.is_object() || j.contains("result") == j.contains("error"))
				abort();
		}
		if (nl == std::string_view::npos)
			break;
		in.remove_prefix(nl + 1);
	}
	return 0;
}

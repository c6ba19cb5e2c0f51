// Shared helpers of the two double libraries: event log, logger calls, Dims text form.
#pragma once
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>

#include "trt_double.h"

namespace dbl {

inline std::mutex& mu() {
    static std::mutex m;
    return m;
}
inline std::string& events() {
    static std::string e;
    return e;
}
inline void event(std::string const& line) {
    std::lock_guard<std::mutex> g(mu());
    events() += line;
    events() += '\n';
}
inline size_t copy_events(char* buf, size_t cap) {
    std::lock_guard<std::mutex> g(mu());
    std::string const& e = events();
    if (buf && cap > 0) {
        size_t n = e.size() < cap - 1 ? e.size() : cap - 1;
        std::memcpy(buf, e.data(), n);
        buf[n] = 0;
    }
    return e.size();
}

using Sev = nvinfer1::ILogger::Severity;
inline void log(nvinfer1::ILogger* l, Sev s, std::string const& msg) {
    if (l) l->log(s, msg.c_str());
}

inline std::string dims_text(nvinfer1::Dims const& d) {
    std::ostringstream o;
    o << d.nbDims;
    for (int i = 0; i < d.nbDims && i < 8; ++i) o << ' ' << d.d[i];
    return o.str();
}
inline bool read_dims(std::istream& in, nvinfer1::Dims& d) {
    d = nvinfer1::Dims{};
    if (!(in >> d.nbDims) || d.nbDims < 0 || d.nbDims > 8) return false;
    for (int i = 0; i < d.nbDims; ++i)
        if (!(in >> d.d[i])) return false;
    return true;
}
inline std::string ptr_text(void const* p) {
    char b[32];
    std::snprintf(b, sizeof b, "%p", p);
    return b;
}

// Slot of a virtual member function from its pointer-to-member (Itanium C++ ABI; the ARM
// variant keeps the virtual bit in the adjustment).
template <typename F>
int slot_of(F f) {
    static_assert(sizeof(F) == 2 * sizeof(void*), "Itanium member pointer");
    struct Raw {
        std::ptrdiff_t ptr, adj;
    } r;
    std::memcpy(&r, &f, sizeof r);
#if defined(__aarch64__) || defined(__arm__)
    if ((r.adj & 1) == 0) return -1;
    return int(r.ptr / std::ptrdiff_t(sizeof(void*)));
#else
    if ((r.ptr & 1) == 0) return -1;
    return int((r.ptr - 1) / std::ptrdiff_t(sizeof(void*)));
#endif
}

struct LayoutCheck {
    std::string report;
    int bad = 0;
    template <typename F>
    void at(char const* what, F f, int want) {
        int got = slot_of(f);
        if (got != want) {
            ++bad;
            report += std::string(what) + ": slot " + std::to_string(got) + ", facts say " +
                      std::to_string(want) + "\n";
        }
    }
};

}  // namespace dbl

#if TRT_MAJOR >= 11
#define PICK(ten, eleven) (eleven)
#else
#define PICK(ten, eleven) (ten)
#endif

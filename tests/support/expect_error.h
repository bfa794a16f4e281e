// Test support: the message of the ktf::Error a callable throws, and a substring expectation.
#pragma once

#include <gtest/gtest.h>
#include <ktf/error.h>

#include <string>

namespace ktf::test {

/// The message of the ktf::Error `f` throws, or "<no error>".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ktf::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace ktf::test

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "in: " << (text)

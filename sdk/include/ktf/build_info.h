// ktf/build_info.h — what a binary was built against: the plugin ABI number, the SDK and libtorch
// versions and the build tag the host compares with every plugin's. Light: it includes no libtorch
// beyond <torch/version.h>, so ktf-host's launcher prints --version without loading libtorch.
#pragma once

#include <torch/version.h>

#include <cstddef>  // defines _GLIBCXX_USE_CXX11_ABI

#include "ktf/version.h"

/// Bumped whenever PluginDescriptor, Registrar or a component interface changes incompatibly.
#define KTF_ABI_VERSION 9

#define KTF_DETAIL_STR2(x) #x
#define KTF_DETAIL_STR(x) KTF_DETAIL_STR2(x)
#define KTF_TORCH_VERSION_STRING \
  KTF_DETAIL_STR(TORCH_VERSION_MAJOR) "." KTF_DETAIL_STR(TORCH_VERSION_MINOR)

#if defined(__clang__)
#define KTF_COMPILER "clang-" KTF_DETAIL_STR(__clang_major__)
#elif defined(__GNUC__)
#define KTF_COMPILER "gcc-" KTF_DETAIL_STR(__GNUC__)
#else
#define KTF_COMPILER "unknown"
#endif
#ifndef _GLIBCXX_USE_CXX11_ABI
#define KTF_CXX11_ABI 1
#else
#define KTF_CXX11_ABI _GLIBCXX_USE_CXX11_ABI
#endif
#ifndef KTF_WITH_CUDA
#define KTF_WITH_CUDA 0
#endif
#if KTF_WITH_CUDA
#define KTF_DEVICE_TAG "cuda"
#else
#define KTF_DEVICE_TAG "cpu"
#endif
#define KTF_BUILD_TAG KTF_COMPILER ";cxx11abi=" KTF_DETAIL_STR(KTF_CXX11_ABI) ";" KTF_DEVICE_TAG

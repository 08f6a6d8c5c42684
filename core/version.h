// Program version, set by CMake from project(VERSION).
#pragma once
namespace mechscope {
inline constexpr const char* kVersion = MECHSCOPE_VERSION_STRING;
}

// Macros for propagating absl::Status and absl::StatusOr.
//
//   absl::Status Load() {
//     MOE_RETURN_IF_ERROR(ParseHeader());
//     MOE_ASSIGN_OR_RETURN(Config config, ReadConfig(path));
//     ...
//   }
#ifndef MOESERVE_COMMON_STATUS_MACROS_H_
#define MOESERVE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MOE_RETURN_IF_ERROR(expr)                  \
  do {                                             \
    ::absl::Status moe_status_ = (expr);           \
    if (!moe_status_.ok()) return moe_status_;     \
  } while (0)

#define MOE_STATUS_CONCAT_INNER_(a, b) a##b
#define MOE_STATUS_CONCAT_(a, b) MOE_STATUS_CONCAT_INNER_(a, b)

#define MOE_ASSIGN_OR_RETURN(lhs, expr) \
  MOE_ASSIGN_OR_RETURN_IMPL_(MOE_STATUS_CONCAT_(moe_statusor_, __LINE__), lhs, expr)

#define MOE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(statusor).value()

#endif  // MOESERVE_COMMON_STATUS_MACROS_H_

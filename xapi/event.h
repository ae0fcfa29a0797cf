/* event.from, event.register/next/unregister, event.inject, event.get_current_id. */
#pragma once

#include "xapi/api.h"

extern const xapi_handler xapi_event_handlers[];

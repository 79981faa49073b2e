// Official CometD client in headless Chromium, forced onto the callback-polling transport.
import { transportSuite } from '../lib/scenarios.mjs';

transportSuite('callback-polling');

// Official CometD client in headless Chromium, forced onto the long-polling transport.
import { transportSuite } from '../lib/scenarios.mjs';

transportSuite('long-polling');

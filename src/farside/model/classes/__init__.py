"""The classes Farside serves, one module each, declared as xapi declares them."""

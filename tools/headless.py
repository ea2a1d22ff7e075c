"""Debian's chromium, headless, driven by selenium through chromedriver: the one browser setup the checks share
(serve_check.py, report_check.py). Test tooling only."""
import os


def find(paths):
    return next((p for p in paths if os.path.exists(p)), None)


def chromium(width=1000, height=800, extra=()):
    """A headless chromium WebDriver, or (None, why) when selenium, chromium or chromedriver is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed"
    binary = find(["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"])
    driver_bin = find(["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
    if not binary or not driver_bin:
        return None, "chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}", *extra]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver_bin), options=opts), None

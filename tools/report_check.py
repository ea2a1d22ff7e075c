"""Opens the report card (report/report.html) in headless chromium, checks that every chart renders (each <img>
loaded with a non-zero size, the summary table present) and saves a screenshot of the whole page.

    python tools/report_check.py REPORT_HTML SCREENSHOT_PNG

Prints one PASS/FAIL line per check, then "report_check: N passed, M failed". Test tooling only.
"""
import os
import sys

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def main():
    html, png = sys.argv[1], sys.argv[2]
    from selenium.webdriver.common.by import By
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from headless import chromium
    driver, why = chromium(1000, 900, ["--allow-file-access-from-files"])
    if driver is None:
        print(f"!! SKIP report browser check: {why}")
        return
    try:
        driver.get("file://" + os.path.abspath(html))
        images = driver.find_elements(By.TAG_NAME, "img")
        check("report: has charts", len(images) >= 3, f"{len(images)} images")
        for img in images:
            src = img.get_attribute("src").rsplit("/", 1)[-1]
            ok = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0 && arguments[0].naturalHeight > 0", img)
            check(f"report: chart {src} renders", ok)
        heads = [th.text for th in driver.find_elements(By.TAG_NAME, "th")]
        check("report: summary table", "Metric" in heads and "SFT" in heads and "RL" in heads, str(heads))
        width = driver.execute_script("return document.body.scrollWidth")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1000, min(max(height + 100, 900), 12000))
        driver.save_screenshot(png)
        check("report: screenshot saved", os.path.getsize(png) > 10000, f"{os.path.getsize(png)} bytes")
        check("report: no sideways scroll at 1000 px", width <= 1000, f"{width} px")
    finally:
        driver.quit()


main()
print(f"report_check: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
